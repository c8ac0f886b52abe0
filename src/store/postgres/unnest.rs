//! Batches as arrays: each column of a batch is one array parameter, named next to its SQL
//! type and its values, and `UNNEST` turns them back into rows inside the statement.
//!
//! This is how the one-statement batch paths take any number of rows with one prepared
//! statement (a multi-row `VALUES` list is a new statement for every batch size). sqlx binds
//! by position, so an [`Unnest`] statement is written against named parts — the array list,
//! the column names, each plain parameter's placeholder — and the placeholders are numbered
//! from the order the columns were given. As with [`crate::store::columns::Write`], the text
//! is built at first use and every later use must name the same columns (checked in debug
//! builds).

use std::sync::OnceLock;

use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Encode, Postgres, Type};

use crate::store::{Result, StoreError};

/// A parameter of the statement: one array column of the batch, or a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    /// The column's name in `v` and the SQL type of its elements.
    Array(&'static str, &'static str),
    Plain(&'static str),
}

/// A batch's parameters, each named next to its values, in bind order.
pub(super) struct Arrays {
    params: Vec<Param>,
    /// The first encoding error is kept, and reported before the statement runs.
    args: Result<PgArguments, BoxDynError>,
}

impl Arrays {
    pub(super) fn new() -> Self {
        Arrays {
            params: Vec::with_capacity(24),
            args: Ok(PgArguments::default()),
        }
    }

    /// The batch's column `name` (of SQL type `sql_type`) has these values, one per row.
    pub(super) fn array<'t, T>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        values: Vec<T>,
    ) -> &mut Self
    where
        Vec<T>: Encode<'t, Postgres> + Type<Postgres>,
    {
        self.push(Param::Array(name, sql_type), values)
    }

    /// A plain parameter, which the statement refers to as [`Parts::param`]`(name)`.
    pub(super) fn plain<'t, T>(&mut self, name: &'static str, value: T) -> &mut Self
    where
        T: Encode<'t, Postgres> + Type<Postgres>,
    {
        self.push(Param::Plain(name), value)
    }

    fn push<'t, T>(&mut self, param: Param, value: T) -> &mut Self
    where
        T: Encode<'t, Postgres> + Type<Postgres>,
    {
        self.params.push(param);
        if let Ok(args) = &mut self.args
            && let Err(e) = args.add(value)
        {
            self.args = Err(e);
        }
        self
    }
}

/// What an [`Unnest`] statement is written against.
pub(super) struct Parts {
    /// `$1::text[], $2::int8[], …`: the arguments of `UNNEST(…)`.
    pub arrays: String,
    /// `id, delivery_id, …`: the names of its columns, in the same order.
    pub columns: String,
    plain: Vec<(&'static str, String)>,
}

impl Parts {
    /// The placeholder of the plain parameter `name`.
    pub(super) fn param(&self, name: &str) -> &str {
        self.plain
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.as_str())
            .expect("the statement names only parameters it is given")
    }

    fn of(params: &[Param]) -> Parts {
        let mut arrays = Vec::new();
        let mut columns = Vec::new();
        let mut plain = Vec::new();
        for (n, param) in (1..).zip(params) {
            match param {
                Param::Array(name, sql_type) => {
                    arrays.push(format!("${n}::{sql_type}[]"));
                    columns.push(*name);
                }
                Param::Plain(name) => plain.push((*name, format!("${n}"))),
            }
        }
        Parts {
            arrays: arrays.join(", "),
            columns: columns.join(", "),
            plain,
        }
    }
}

/// A statement over a batch of [`Arrays`] (see the module docs).
pub(super) struct Unnest {
    template: fn(&Parts) -> String,
    built: OnceLock<(Vec<Param>, String)>,
}

impl Unnest {
    pub(super) const fn new(template: fn(&Parts) -> String) -> Unnest {
        Unnest {
            template,
            built: OnceLock::new(),
        }
    }

    /// The statement's text and `arrays` bound, for `sqlx::query_*_with`.
    pub(super) fn bind(&'static self, arrays: Arrays) -> Result<(&'static str, PgArguments)> {
        let (params, sql) = self.built.get_or_init(|| {
            let text = (self.template)(&Parts::of(&arrays.params));
            (arrays.params.clone(), text)
        });
        debug_assert_eq!(
            params, &arrays.params,
            "a batch names the same columns every time"
        );
        let args = arrays
            .args
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
        Ok((sql.as_str(), args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_order_the_parameters_are_given() {
        let mut a = Arrays::new();
        a.array("id", "text", vec!["a"])
            .plain("count", 1_i64)
            .array("size", "int8", vec![2_i64]);
        let parts = Parts::of(&a.params);
        assert_eq!(parts.arrays, "$1::text[], $3::int8[]");
        assert_eq!(parts.columns, "id, size");
        assert_eq!(parts.param("count"), "$2");
    }
}

//! Wide writes with each column named next to the value it gets.
//!
//! sqlx binds by position only (`$1`, `$2`, …), so a 21-column `INSERT` written by hand asks
//! the reader to count placeholders against a column list and a list of `.bind` calls. Here a
//! write is a [`Columns`] list of `(column, value)` pairs, and the statement text is made from
//! the names: the placeholders follow the order the pairs were given in, whatever it is.
//!
//! A [`Write`] is a `static` statement: its text is built at first use and reused after, so a
//! hot path costs what a hand-written literal does. Every later use must name the same
//! columns in the same order (checked in debug builds), which a write with a fixed list of
//! pairs always does. [`insert_rows`] is the multi-row form, built per call as its row count
//! varies.

use std::sync::OnceLock;

use sqlx::error::BoxDynError;
use sqlx::query::Query;
use sqlx::{Arguments, Database, Encode, IntoArguments, Type};

use super::{Result, StoreError};

/// A statement with its values bound, ready to run.
pub(crate) type Bound<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// What a pair is in an `UPDATE`: a column to set, or one the row is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Set,
    Key,
}

/// The columns of a write, each with its value, in bind order.
pub(crate) struct Columns<DB: Database> {
    /// The first row's columns; later rows of [`insert_rows`] must name the same.
    names: Vec<(Role, &'static str)>,
    /// Where the current row is in `names`.
    at: usize,
    rows: usize,
    /// The first encoding error is kept, and reported before the statement runs.
    args: Result<DB::Arguments, BoxDynError>,
}

impl<DB: Database> Columns<DB> {
    pub(crate) fn new() -> Self {
        Columns {
            names: Vec::with_capacity(24),
            at: 0,
            rows: 1,
            args: Ok(Default::default()),
        }
    }

    /// `column` gets `value` (in an `INSERT`, or the `SET` of an `UPDATE`).
    pub(crate) fn set<'t, T>(&mut self, column: &'static str, value: T) -> &mut Self
    where
        T: Encode<'t, DB> + Type<DB>,
    {
        self.push(Role::Set, column, value)
    }

    /// The `UPDATE` applies to the row whose `column` equals `value`.
    pub(crate) fn key<'t, T>(&mut self, column: &'static str, value: T) -> &mut Self
    where
        T: Encode<'t, DB> + Type<DB>,
    {
        self.push(Role::Key, column, value)
    }

    fn push<'t, T>(&mut self, role: Role, column: &'static str, value: T) -> &mut Self
    where
        T: Encode<'t, DB> + Type<DB>,
    {
        if self.rows == 1 {
            self.names.push((role, column));
        } else {
            debug_assert_eq!(
                self.names.get(self.at),
                Some(&(role, column)),
                "every row names the same columns"
            );
        }
        self.at += 1;
        if let Ok(args) = &mut self.args
            && let Err(e) = args.add(value)
        {
            self.args = Err(e);
        }
        self
    }

    /// The values, or the first that could not be encoded (as `Query::bind` would report it
    /// when the statement runs).
    fn arguments(self) -> Result<DB::Arguments> {
        self.args
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
    }

    /// Starts the next row of a multi-row insert.
    fn next_row(&mut self) {
        debug_assert_eq!(
            self.at,
            self.names.len(),
            "every row names the same columns"
        );
        self.rows += 1;
        self.at = 0;
    }

    fn names(&self, role: Role) -> impl Iterator<Item = (usize, &'static str)> + '_ {
        // Placeholders are numbered from 1 in the order the pairs were given.
        (1..)
            .zip(&self.names)
            .filter(move |(_, (r, _))| *r == role)
            .map(|(n, (_, name))| (n, *name))
    }
}

/// A statement made from the column names of its first use (see the module docs).
pub(crate) struct Write {
    kind: Kind,
    /// The names it was built from, and the text: one per dialect, whose placeholders differ
    /// ([`placeholder`]; a process may use both stores, as the tests and `herald bench` do).
    built: [OnceLock<Built>; 2],
}

/// The column names a [`Write`] was built from, and its text.
type Built = (Vec<(Role, &'static str)>, String);

enum Kind {
    Insert {
        table: &'static str,
    },
    /// `condition`: more of the `WHERE` clause, `AND`ed to the keys (empty: none). A function
    /// so it can carry domain constants as literals (see [`super::sql`]).
    Update {
        table: &'static str,
        condition: fn() -> String,
    },
}

impl Write {
    /// `INSERT INTO table (…) VALUES (…)`.
    pub(crate) const fn insert(table: &'static str) -> Write {
        Write {
            kind: Kind::Insert { table },
            built: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// `UPDATE table SET … WHERE keys… [AND condition]`.
    pub(crate) const fn update(table: &'static str, condition: fn() -> String) -> Write {
        Write {
            kind: Kind::Update { table, condition },
            built: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The statement with `cols` bound, ready to run.
    pub(crate) fn query<'q, DB>(&'static self, cols: Columns<DB>) -> Result<Bound<'q, DB>>
    where
        DB: Database,
        DB::Arguments: IntoArguments<DB>,
    {
        let (names, sql) = self.built[usize::from(is_sqlite::<DB>())]
            .get_or_init(|| (cols.names.clone(), self.text(&cols)));
        debug_assert_eq!(
            names, &cols.names,
            "a write names the same columns every time"
        );
        Ok(sqlx::query_with(sql.as_str(), cols.arguments()?))
    }

    fn text<DB: Database>(&self, cols: &Columns<DB>) -> String {
        match &self.kind {
            Kind::Insert { table } => {
                debug_assert!(
                    cols.names(Role::Key).next().is_none(),
                    "inserts have no keys"
                );
                insert_text(table, cols)
            }
            Kind::Update { table, condition } => {
                let p = placeholder::<DB>;
                let set = join(
                    cols.names(Role::Set)
                        .map(|(n, c)| format!("{c} = {}", p(n))),
                );
                let mut filter: Vec<String> = cols
                    .names(Role::Key)
                    .map(|(n, c)| format!("{c} = {}", p(n)))
                    .collect();
                filter.push(condition());
                filter.retain(|c| !c.is_empty());
                format!("UPDATE {table} SET {set} WHERE {}", filter.join(" AND "))
            }
        }
    }
}

/// A multi-row `INSERT INTO table (…) VALUES (…), (…)`: `row` names each item's columns.
pub(crate) fn insert_rows<'q, DB, T>(
    table: &str,
    items: &[T],
    mut row: impl FnMut(&mut Columns<DB>, &T),
) -> Result<Bound<'q, DB>>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
{
    let mut cols = Columns::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            cols.next_row();
        }
        row(&mut cols, item);
    }
    let sql = insert_text(table, &cols);
    Ok(sqlx::query_with(
        sqlx::AssertSqlSafe(sql),
        cols.arguments()?,
    ))
}

fn insert_text<DB: Database>(table: &str, cols: &Columns<DB>) -> String {
    use std::fmt::Write as _;
    let width = cols.names.len();
    let names = join(cols.names.iter().map(|(_, c)| c.to_string()));
    // One buffer for the placeholders: a publish's insert has thousands.
    let mut sql = String::with_capacity(64 + names.len() + cols.rows * width * 6);
    let _ = write!(sql, "INSERT INTO {table} ({names}) VALUES ");
    for r in 0..cols.rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for n in 1..=width {
            let sep = if n == 1 { "" } else { ", " };
            // Inserts bind in text order, so SQLite can take plain `?` (see [`placeholder`]).
            if is_sqlite::<DB>() {
                let _ = write!(sql, "{sep}?");
            } else {
                let _ = write!(sql, "{sep}${}", r * width + n);
            }
        }
        sql.push(')');
    }
    sql
}

/// The `n`th bind parameter (from 1), as the database reads it fastest.
///
/// Differs on SQLite because SQLite keeps a list of every named or numbered parameter (`$1`,
/// `?1`), and sqlx binds each by asking SQLite its name, a search of that list: quadratic in
/// the placeholders. That made a batch publish's 22,000-value insert nine times slower (measured
/// with `herald bench`), so multi-row inserts use plain `?`, which has no name; the short
/// statements here, whose binds are not in text order, use `?NNN`. Postgres has only `$n`.
fn placeholder<DB: Database>(n: usize) -> String {
    if is_sqlite::<DB>() {
        format!("?{n}")
    } else {
        format!("${n}")
    }
}

fn is_sqlite<DB: Database>() -> bool {
    DB::NAME == "SQLite"
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    static TOUCH: Write = Write::update("things", || "enabled".into());

    #[test]
    fn an_update_numbers_placeholders_in_the_order_the_pairs_are_given() {
        let mut c = Columns::<sqlx::Sqlite>::new();
        c.set("name", "x").key("id", "a").set("size", 3_i64);
        assert_eq!(
            TOUCH.text(&c),
            "UPDATE things SET name = ?1, size = ?3 WHERE id = ?2 AND enabled"
        );
    }

    #[test]
    fn a_multi_row_insert_numbers_each_row_on_from_the_last() {
        let mut c = Columns::<sqlx::Sqlite>::new();
        c.set("id", "a").set("size", 1_i64);
        c.next_row();
        c.set("id", "b").set("size", 2_i64);
        assert_eq!(
            insert_text("things", &c),
            "INSERT INTO things (id, size) VALUES (?, ?), (?, ?)"
        );
        let mut c = Columns::<sqlx::Postgres>::new();
        c.set("id", "a");
        c.next_row();
        c.set("id", "b");
        assert_eq!(
            insert_text("things", &c),
            "INSERT INTO things (id) VALUES ($1), ($2)"
        );
    }
}

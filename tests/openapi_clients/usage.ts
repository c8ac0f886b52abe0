// Type-checked (not run) against the types openapi-typescript generates from Herald's
// /openapi.json into ./schema.d.ts, by tests/it/openapi.rs: a TypeScript client's view of the API.
import type { components, operations, paths } from "./schema";

type Schemas = components["schemas"];

// Publishing: `data` is any JSON, so an array and a scalar type-check as well as an object.
const publish: Schemas["PublishRequest"][] = [
  { tenant_id: "acme", topic: "job.done", data: { ok: true } },
  { tenant_id: "acme", topic: "job.done", data: [1, 2, 3] },
  { tenant_id: "acme", topic: "job.done", data: "text" },
];

// Delivery statuses are an enum with exactly the values the API accepts.
const status: Schemas["DeliveryStatus"] = "succeeded";
const query: operations["list_deliveries"]["parameters"]["query"] = { status, limit: 10 };

// A callback body may be any JSON; reading it needs a check, as for `unknown`.
function firstKey(c: Schemas["CallbackView"]): string | undefined {
  const body = c.body;
  if (body && typeof body === "object" && !Array.isArray(body)) {
    return Object.keys(body)[0];
  }
  return undefined;
}

// Errors are problem+json with a machine-readable code and the field that failed.
type NotFound = paths["/v1/deliveries/{id}"]["get"]["responses"][404];
function code(p: NotFound["content"]["application/problem+json"]): string {
  return `${p.code}${p.field ? ` (${p.field})` : ""}`;
}

// Waiting: a received wait carries the callback and the cursor to wait after.
function next(w: Schemas["WaitResponse"]): number {
  return w.status === "received" && w.callback ? w.cursor : w.cursor;
}

export { publish, query, firstKey, code, next };

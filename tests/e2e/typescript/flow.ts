// A create, read, conflict and not-found flow typed by the types openapi-typescript generates
// from /openapi.json (./schema.d.ts, written by tests/e2e/test_generated_client.py). It
// compiles under `tsc --strict` only if the operations, envelopes and error responses it names
// exist with these shapes; it then runs on Node against the served app.
import type { components, operations } from "./schema";

type UserIn = components["schemas"]["UserIn"];
type GetUser = operations["get_get_user"]["responses"];
type Created = operations["post_create_user"]["responses"][200]["content"]["application/json"];
type Read = GetUser[200]["content"]["application/json"];
type NotFound = GetUser[404]["content"]["application/json"];
type Conflict =
  operations["post_create_user"]["responses"][409]["content"]["application/json"];

const [baseUrl, token] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
}

async function main(): Promise<void> {
  const body: UserIn = { name: "typescript", role: 0 };
  const created = await fetch(`${baseUrl}/api/v1/user`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
  check(created.status === 200, `create: ${created.status}`);
  const user: Created = await created.json();
  check(user.status === "succeed" && user.data.name === "typescript", "create: body");

  const read = await fetch(`${baseUrl}/api/v1/user/${user.data.id}`, { headers });
  const same: Read = await read.json();
  check(same.data.id === user.data.id && read.headers.get("ETag") === '"1"', "read");

  const conflict = await fetch(`${baseUrl}/api/v1/user`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
  const failed: Conflict = await conflict.json();
  check(conflict.status === 409 && failed.msg.startsWith("name:"), `conflict: ${failed.msg}`);

  const missing = await fetch(`${baseUrl}/api/v1/user/00000000-0000-7000-8000-000000000000`, {
    headers,
  });
  const notFound: NotFound = await missing.json();
  check(missing.status === 404 && notFound.status === "failed", "not found");
  console.log(`flow ok: ${notFound.msg}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

// Validate an AsyncAPI document with @asyncapi/parser (the AsyncAPI initiative's own parser and
// its Spectral rules): `node validate-asyncapi.mjs asyncapi.json`. Prints each diagnostic as a
// JSON line and "parsed"; exits 1 when the document does not parse or has an error or warning
// (severity 0 or 1). tests/e2e/test_asyncapi.py runs it on the service's /asyncapi.json.
import { Parser } from "@asyncapi/parser";
import { readFileSync } from "node:fs";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
let failed = !document;
for (const diagnostic of diagnostics) {
  const { severity, code, message, path } = diagnostic;
  console.log(JSON.stringify({ severity, code, message, path: path.join("/") }));
  if (severity <= 1) failed = true;
}
console.log(document ? "parsed" : "not parsed");
process.exit(failed ? 1 : 0);

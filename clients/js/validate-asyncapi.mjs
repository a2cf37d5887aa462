import { Parser } from "@asyncapi/parser";
import { readFileSync } from "node:fs";
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
for (const d of diagnostics) console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path.join("/") }));
console.log(document ? "parsed" : "not parsed");

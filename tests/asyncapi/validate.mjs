// Validates an AsyncAPI document with the AsyncAPI parser (offline: no remote $refs).
// Usage: node validate.mjs <file>. Prints every diagnostic; exits 1 on any error or warning.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs <asyncapi.yaml>");
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"), {
  source: file,
});
const severity = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  const where = (d.path ?? []).join("/");
  console.log(`${severity[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
}
const bad = diagnostics.filter((d) => d.severity <= 1);
if (!document || bad.length > 0) {
  console.error(`${file}: ${bad.length} error(s)/warning(s); the parser ${document ? "read" : "refused"} it`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels`);

// Validates every AsyncAPI document in contracts/asyncapi with the official parser
// (@asyncapi/parser: JSON Schema of the spec plus the Spectral ruleset, $refs resolved).
// Prints every error and warning; exits 1 when any document has an error.
// Usage: node validate.mjs [file.yaml ...]   (default: every contracts/asyncapi/*.yaml)
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'info', 'hint'];
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const contractsDir = join(root, 'contracts', 'asyncapi');

const files = process.argv.length > 2
  ? process.argv.slice(2).map((f) => resolve(f))
  : readdirSync(contractsDir)
      .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
      .sort()
      .map((f) => join(contractsDir, f));

const parser = new Parser();
let errors = 0;
let warnings = 0;

for (const file of files) {
  const shown = relative(root, file);
  const { document, diagnostics } = await fromFile(parser, file).parse();
  for (const d of diagnostics) {
    if (d.severity > 1) continue; // info and hints are noise here
    if (d.severity === 0) errors += 1;
    else warnings += 1;
    const line = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : '?';
    const where = d.path && d.path.length ? ` at ${d.path.join('.')}` : '';
    const source = d.source && resolve(d.source) !== file ? ` (in ${relative(root, d.source)})` : '';
    console.log(`${shown}:${line}: ${SEVERITY[d.severity]} ${d.code}: ${d.message}${where}${source}`);
  }
  if (!document && !diagnostics.some((d) => d.severity === 0)) {
    errors += 1;
    console.log(`${shown}: error: the parser returned no document`);
  }
  if (document) console.log(`${shown}: ok (${document.messages().length} messages)`);
}

console.log(`asyncapi: ${files.length} documents, ${errors} errors, ${warnings} warnings`);
process.exit(errors > 0 ? 1 : 0);

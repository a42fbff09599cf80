// Builds the console and the GraphiQL page from src/ into static/ (committed, shipped in the
// Python package). `node build.mjs --check` builds into a temporary folder instead and fails
// when the result differs from static/: CI runs it, so the committed files are always what
// the pinned sources and lockfile give. Sizes are printed raw and gzip-compressed.
//
// The rule language's keywords and units are read from dsl/grammar.lark at build time, so the
// editor's highlighting cannot drift from the parser (a grammar change changes the build, which
// the check then asks to commit).

import * as esbuild from "esbuild";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const committed = join(here, "static");
const check = process.argv.includes("--check");
const outdir = check ? mkdtempSync(join(tmpdir(), "tierwise-console-")) : committed;
if (!check) rmSync(committed, { recursive: true, force: true }); // no stale files left behind

/** Keywords (every quoted word of the grammar) and duration units (the UNIT terminal). */
function grammarWords(path) {
  const text = readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("//"))
    .join("\n");
  const keywords = [...new Set([...text.matchAll(/"([a-z]+)"/g)].map((m) => m[1]))].sort();
  const unit = text.match(/^UNIT[^:]*:\s*\/\(([a-z|]+)\)/m);
  if (!unit) throw new Error(`${path}: no UNIT terminal of the form /(day|...)s?/`);
  return { keywords, units: unit[1].split("|") };
}

const grammar = {
  name: "tierwise-grammar",
  setup(build) {
    const path = join(here, "..", "..", "dsl", "grammar.lark");
    build.onResolve({ filter: /^tierwise:grammar$/ }, () => ({
      path,
      namespace: "tierwise-grammar",
    }));
    build.onLoad({ filter: /.*/, namespace: "tierwise-grammar" }, () => ({
      contents: `export default ${JSON.stringify(grammarWords(path))};`,
      loader: "js",
    }));
  },
};

const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  charset: "utf8",
  legalComments: "linked",
  loader: { ".graphql": "text" },
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
  outdir,
  plugins: [grammar],
};

await esbuild.build({
  ...common,
  entryPoints: { console: join(here, "src", "console.js"), graphiql: join(here, "src", "graphiql.jsx") },
  jsx: "automatic",
});

const sizes = [];
for (const name of readdirSync(outdir).sort()) {
  const bytes = readFileSync(join(outdir, name));
  if (name.endsWith(".js") || name.endsWith(".css")) {
    sizes.push({ file: name, bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length });
  }
}
for (const { file, bytes, gzip } of sizes) {
  console.log(`${file.padEnd(16)} ${String(bytes).padStart(9)} B  ${String(gzip).padStart(8)} B gzip`);
}

if (check) {
  const built = readdirSync(outdir).sort();
  const present = readdirSync(committed).sort();
  const differing = [...new Set([...built, ...present])].filter((name) => {
    if (!built.includes(name) || !present.includes(name)) return true;
    return !readFileSync(join(outdir, name)).equals(readFileSync(join(committed, name)));
  });
  rmSync(outdir, { recursive: true });
  if (differing.length) {
    console.error(
      `service/console/static differs from a fresh build: ${differing.join(", ")}\n` +
        "run `npm ci && npm run build` in service/console and commit the result",
    );
    process.exit(1);
  }
  console.log("service/console/static is what the sources build to");
}

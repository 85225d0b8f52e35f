// The playground as a static site: index.html + one bundled app.js, relative URLs only, no node_modules at run time.
// Serve OUT from any static file server, under any sub-path (e.g. https://USER.github.io/REPO/).
//
//   node web/tools/bundle.mjs OUT [--no-minify]      (npm run bundle --prefix web -- OUT; mlcbuild bundle OUT)
//
// esbuild bundles web/src/bundle/entry.js: the app's own modules, tvmjs (@mlc-ai/web-runtime), the tokenizers (their
// wasm is inlined as a data: URL, so nothing else is fetched) and @huggingface/jinja. index.html is web/index.html
// with its dev block (import map + node_modules scripts) replaced by app.js. Prints one JSON line: the files written.
import { build, version } from "esbuild";
import { builtinModules } from "node:module";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DEV_BLOCK = /<!-- dev:[^]*?<!-- \/dev -->/;

function parseArgs(argv) {
  const opts = { out: null, minify: true };
  for (const a of argv) {
    if (a === "--no-minify") opts.minify = false;
    else if (a.startsWith("-")) throw new Error(`unknown option ${a}`);
    else if (opts.out) throw new Error("one output folder only");
    else opts.out = resolve(process.env.INIT_CWD ?? process.cwd(), a); // npm --prefix runs us in web/
  }
  if (!opts.out) throw new Error("usage: bundle.mjs OUT [--no-minify]");
  return opts;
}

// write beside, then rename: a server never hands out half a file
function writeAtomic(path, data) {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export function pageHtml(devHtml) {
  if (!DEV_BLOCK.test(devHtml)) throw new Error("web/index.html has no <!-- dev: ... <!-- /dev --> block");
  const html = devHtml.replace(DEV_BLOCK, '<script type="module" src="app.js"></script>');
  // a root-relative or node_modules URL would break under a sub-path or without node_modules
  const bad = html.match(/(?:src|href)="\/[^"]*"|node_modules/);
  if (bad) throw new Error(`the bundled index.html still points at ${bad[0]}`);
  return html;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  mkdirSync(opts.out, { recursive: true });
  const res = await build({
    entryPoints: [join(WEB, "src", "bundle", "entry.js")], bundle: true, write: false, format: "esm",
    platform: "browser", target: ["chrome113", "edge113", "firefox141", "safari26"], minify: opts.minify,
    keepNames: true, // errors.js names its error classes after constructor.name, and messages.js reads them
    legalComments: "eof", charset: "utf8", logLevel: "warning", outfile: join(opts.out, "app.js"),
    // node-only branches of tvmjs and the tokenizers' emscripten glue (never taken in a browser)
    external: [...builtinModules, "ws"],
  });
  const files = { "app.js": res.outputFiles[0].contents,
    "index.html": Buffer.from(pageHtml(readFileSync(join(WEB, "index.html"), "utf8"))) };
  const out = { out: opts.out, esbuild: version, files: {} };
  for (const [name, data] of Object.entries(files)) {
    writeAtomic(join(opts.out, name), data);
    out.files[name] = { size: data.length, sha256: createHash("sha256").update(data).digest("hex") };
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`bundle: ${e.message}`);
  process.exit(1);
});

// Bundle the explorer into ../static (committed, so `pip install` + `attrgraph serve` needs no Node).
//
//   node build.mjs                 build into ../static
//   node build.mjs --outdir DIR    build into DIR instead (the test that static/ is fresh uses this)
//   node build.mjs --check         build into a temporary directory and compare with ../static
//
// The output is deterministic: same sources + same package-lock.json -> the same bytes.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const defaultOut = resolve(here, "..", "static");

function argValue(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export async function build(outdir) {
  mkdirSync(outdir, { recursive: true });
  for (const name of readdirSync(outdir)) rmSync(join(outdir, name), { recursive: true, force: true });
  await esbuild.build({
    absWorkingDir: here,
    entryPoints: { home: "src/home.js", graph: "src/graph.js" },
    outdir,
    bundle: true,
    format: "esm",
    splitting: false,
    minify: true,
    target: ["es2020", "chrome100", "firefox100", "safari15"],
    legalComments: "eof",
    charset: "utf8",
    logLevel: "warning",
    sourcemap: false,
  });
  for (const name of readdirSync(join(here, "public"))) copyFileSync(join(here, "public", name), join(outdir, name));
  // Swagger UI for the API's /docs, served from here so the docs work offline (no CDN).
  const swagger = join(here, "node_modules", "swagger-ui-dist");
  for (const name of ["swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt", "swagger-ui.css"]) copyFileSync(join(swagger, name), join(outdir, name));
  copyFileSync(join(swagger, "LICENSE"), join(outdir, "swagger-ui.LICENSE.txt"));
}

function listFiles(dir) {
  return readdirSync(dir).filter((n) => statSync(join(dir, n)).isFile()).sort();
}

async function check() {
  const tmp = mkdtempSync(join(tmpdir(), "attrgraph-static-"));
  try {
    await build(tmp);
    const want = listFiles(tmp);
    const have = listFiles(defaultOut);
    const problems = [];
    for (const name of new Set([...want, ...have])) {
      if (!want.includes(name)) problems.push(`static/${name}: not produced by the build (remove it)`);
      else if (!have.includes(name)) problems.push(`static/${name}: missing`);
      else if (!readFileSync(join(tmp, name)).equals(readFileSync(join(defaultOut, name))))
        problems.push(`static/${name}: differs from a fresh build`);
    }
    if (problems.length) {
      console.error(problems.join("\n") + "\nRun `npm run build` in frontend/ and commit static/.");
      process.exit(1);
    }
    console.log(`static/ matches a fresh build (${want.length} files)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv.includes("--check")) await check();
else await build(resolve(argValue("--outdir") ?? defaultOut));

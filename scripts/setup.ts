/**
 * The set-up step of `deno task test` and `deno task report` (which runs it in-process), and of
 * `.ci/run`: finds what the study needs, installs what it can, stops with the exact command to
 * run otherwise, and ends with a checklist and the backend the study will use.
 *
 *   deno task setup [test|report]
 */
import { type Purpose, runSetup, SetupError } from "../lib/machine/setup.ts";
import { cliArgs, formatCliError } from "../lib/machine/cli_error.ts";

const HELP = `deno task setup [test|report]

Finds what the study needs and installs what is missing: Jupyter's nbconvert, nbclient and
jupyter-client, the Deno Jupyter kernel, OpenBLAS and oneDNN (the CPU fast path), a notebook UI
(Debian's classic Notebook; JupyterLab if you pip-install it), and for the tests Mesa's Vulkan
drivers, Chromium and a CJK font (fonts-noto-cjk). Debian packages are installed with apt-get when run as
root; otherwise it stops with the command to run. Fast (well under 2 s) when all is there.

  test      what \`deno task test\` needs (default)
  report    what \`deno task report\` needs
  --debug     show the stack trace of an error (also MNIST_DEBUG=1)
  -h, --help  this text`;

/** Runs the set-up and prints its checklist and the backend line; false when it had to stop. */
export async function setupStep(purpose: Purpose): Promise<boolean> {
  try {
    const result = await runSetup(purpose, undefined, (l) => console.log(l));
    for (const line of result.lines) console.log(line);
  } catch (e) {
    if (!(e instanceof SetupError)) throw e;
    console.error(e.message);
    return false;
  }
  // Loaded only now: the CPU fast path opens OpenBLAS/oneDNN when it starts, after any install.
  const { initBackend } = await import("../lib/machine/backend.ts");
  try {
    const b = await initBackend({ quiet: true });
    console.log(`  backend: ${b.name} — ${b.why}`);
  } catch (e) {
    console.error(`  backend: ${(e as Error).message}`);
    return false;
  }
  return true;
}

if (import.meta.main) {
  const args = cliArgs();
  if (args.includes("-h") || args.includes("--help")) {
    console.log(HELP);
  } else if (args.length > 1 || (args.length === 1 && args[0] !== "test" && args[0] !== "report")) {
    console.error(`setup: expected \`test\` or \`report\`, got ${args.join(" ")}\n\n${HELP}`);
    Deno.exit(2);
  } else {
    const ok = await setupStep((args[0] ?? "test") as Purpose).catch((e) => {
      console.error(formatCliError("setup", e));
      return false;
    });
    if (!ok) Deno.exit(1);
  }
}

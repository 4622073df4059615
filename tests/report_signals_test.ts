/**
 * `deno task report` told to stop (SIGTERM: `kill`, a scheduler's time limit) while a notebook
 * trains: it stops nbconvert and the kernel — no process of it is left — says where it stopped,
 * and the run being trained keeps a usable backup (its lock released by the kernel on the way
 * out). The notebook is a one-cell stand-in for the study's: it trains a small run as notebook 02
 * does, so the test needs no study notebook to be slow.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { inspectBackup } from "../lib/runs/backup.ts";
import { processExists, processTree } from "../lib/machine/signals.ts";

const REPO = new URL("..", import.meta.url).pathname;
const lib = (m: string) => JSON.stringify(new URL(`../lib/${m}`, import.meta.url).href);

/** A notebook whose one cell trains a baseline for many epochs, with backups, as notebooks do. */
function trainingNotebook(): string {
  const source = [
    `const { initBackend } = await import(${lib("machine/backend.ts")});`,
    `const { loadMnist } = await import(${lib("data/mnist.ts")});`,
    `const { currentProfile, profileSplits } = await import(${lib("study/profile.ts")});`,
    `const { studyRun } = await import(${lib("study/study_run.ts")});`,
    `const backend = await initBackend({ force: "cpu-fast", quiet: true });`,
    `const profile = currentProfile("quick");`,
    `const { train, test } = profileSplits(await loadMnist(), profile);`,
    `await studyRun({ model: "baseline", profile, backend, train: { ...train, count: 120 },`,
    `  test, seed: 21, epochs: 200, progress: false });`,
  ].join("\n");
  return JSON.stringify({
    cells: [
      { cell_type: "markdown", metadata: {}, source: "# Signals" },
      { cell_type: "code", metadata: {}, execution_count: null, outputs: [], source },
    ],
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  });
}

async function jupyterPresent(): Promise<boolean> {
  try {
    return (await new Deno.Command("jupyter", { args: ["nbconvert", "--version"] }).output())
      .success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "SIGTERM to the report mid-notebook stops nbconvert and the kernel and says where",
  sanitizeResources: false,
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    if (!(await jupyterPresent())) {
      console.log("skipped: jupyter nbconvert is not installed (deno task setup report)");
      return;
    }
    // Inside the repository (hidden, removed after): the kernel runs in the notebook's folder and
    // finds the project's deno.json (its imports) from there, as the study's notebooks do.
    const tmp = await Deno.makeTempDir({ dir: REPO, prefix: ".report-signals-test-" });
    let tree: number[] = [];
    try {
      const notebooks = join(tmp, "notebooks"), runs = join(tmp, "runs");
      await Deno.mkdir(notebooks);
      await Deno.writeTextFile(join(notebooks, "01_train.ipynb"), trainingNotebook());
      const driver = `import { report } from ${JSON.stringify(`${REPO}scripts/report.ts`)};\n` +
        `await report({ notebooksDir: ${JSON.stringify(notebooks)}, outDir: ` +
        `${JSON.stringify(join(tmp, "html"))} });`;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--ext=ts", driver],
        cwd: REPO,
        env: { RUNS_DIR: runs, MNIST_PROFILE: "quick", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = [child.stdout, child.stderr].map((s) => new Response(s).text());
      // The kernel trains once its run's first backup is there.
      const backups = join(runs, ".backups");
      const deadline = Date.now() + 120_000;
      let backup: string | undefined;
      let ended = false;
      child.status.then(() => ended = true);
      while (!backup && !ended && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        backup = [...(function* () {
          try {
            yield* Deno.readDirSync(backups);
          } catch { /* not yet */ }
        })()].map((e) => e.name).find((n) => n.endsWith(".backup"));
      }
      tree = processTree(child.pid);
      if (!backup) {
        if (!ended) child.kill("SIGKILL");
        assert.fail(`no backup within 2 min:\n${(await Promise.all(output)).join("\n")}`);
      }
      assert.ok(tree.length >= 3, `report, nbconvert and kernel: ${tree}`);

      child.kill("SIGTERM");
      const status = await child.status;
      const [stdout, stderr] = await Promise.all(output);
      assert.equal(status.code, 143, stdout + stderr);
      assert.match(
        stderr,
        /^report: stopped by SIGTERM while executing 01_train\.ipynb \(after .*\); stopped its \d+ process\(es\) \(nbconvert, kernel\)\. Backups that resume: baseline_cnn \(quick, seed 21\) after epoch \d+\/200\. Run the same command again/m,
      );
      await new Promise((r) => setTimeout(r, 300));
      const left = tree.filter(processExists);
      assert.deepEqual(left, [], `processes left: ${left}`);
      const header = inspectBackup(join(backups, backup));
      assert.ok(header && header.epoch >= 1, "the backup is usable");
      const locks = [...Deno.readDirSync(join(runs, ".locks"))].filter((e) =>
        e.name.endsWith(".lock")
      );
      assert.deepEqual(locks, [], "the kernel released its lock");
    } finally {
      // A failed check must not leave a kernel training into the removed folder.
      for (const p of tree.filter(processExists)) {
        try {
          Deno.kill(p, "SIGKILL");
        } catch { /* gone */ }
      }
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

/**
 * The set-up step's decisions on faked machines (everything there; each piece missing; not
 * root; no apt-get), and runSetup carrying them out through a faked system that records the
 * commands it was asked to run: nothing here installs or probes anything on the real machine.
 */
import assert from "node:assert/strict";
import {
  APT_LOCK_WAIT_S,
  checklist,
  type PieceId,
  planSetup,
  runSetup,
  SetupError,
  type SetupFacts,
  type SetupSystem,
} from "../lib/machine/setup.ts";

const DENO = "/usr/lib/node_modules/deno/deno";

/** A Debian machine, as root, with everything installed. */
function allThere(): SetupFacts {
  return {
    os: "linux",
    root: true,
    aptGet: true,
    sudo: false,
    deno: DENO,
    jupyter: {
      command: "/usr/bin/jupyter",
      nbconvert: "6.5.3",
      nbclient: "0.7.2",
      jupyterClient: "7.4.9",
    },
    denoKernel: {
      dir: "/root/.local/share/jupyter/kernels/deno",
      argv0: "/usr/bin/deno",
      argv0Real: DENO,
    },
    openblas: "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    onednn: "/usr/lib/x86_64-linux-gnu/libdnnl.so.2",
    vulkan: ["lvp_icd.x86_64.json"],
    chromium: "/usr/bin/chromium",
    chromiumEnv: null,
    cjkFont: "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    notebookUi: "Notebook 6.4.12 (jupyter notebook)",
    parallel: "/usr/bin/parallel",
  };
}

/** The same machine without one piece. */
function without(id: PieceId, f = allThere()): SetupFacts {
  switch (id) {
    case "jupyter":
      return { ...f, jupyter: { ...f.jupyter, nbclient: null } };
    case "kernel":
      return { ...f, denoKernel: null };
    case "openblas":
      return { ...f, openblas: null };
    case "onednn":
      return { ...f, onednn: null };
    case "vulkan":
      return { ...f, vulkan: [] };
    case "chromium":
      return { ...f, chromium: null };
    case "cjkfont":
      return { ...f, cjkFont: null };
    case "notebookui":
      return { ...f, notebookUi: null };
    case "parallel":
      return { ...f, parallel: null };
  }
}

const PACKAGES: Record<Exclude<PieceId, "kernel">, string[]> = {
  jupyter: ["jupyter-nbconvert", "python3-nbclient", "jupyter-client"],
  openblas: ["libopenblas0-pthread"],
  onednn: ["libdnnl2"],
  vulkan: ["mesa-vulkan-drivers"],
  chromium: ["chromium"],
  cjkfont: ["fonts-noto-cjk"],
  notebookui: ["jupyter-notebook"],
  parallel: ["parallel"],
};

/** A faked system: probes return `states` in turn (the last one repeats); commands are recorded. */
function fakeSystem(
  states: SetupFacts[],
  results: Record<string, number> = {},
): SetupSystem & { commands: string[]; probes: number } {
  const sys = {
    commands: [] as string[],
    probes: 0,
    probe() {
      return Promise.resolve(states[Math.min(sys.probes++, states.length - 1)]);
    },
    run(cmd: string, args: string[]) {
      const line = `${cmd === Deno.execPath() ? "deno" : cmd} ${args.join(" ")}`;
      sys.commands.push(line);
      const code = Object.entries(results).find(([k]) => line.startsWith(k))?.[1] ?? 0;
      return Promise.resolve({ code, output: code ? "E: Unable to locate package chromium" : "" });
    },
  };
  return sys;
}

Deno.test("all present: nothing to install, nothing run, a checklist of ticks", async () => {
  for (const purpose of ["test", "report"] as const) {
    const plan = planSetup(allThere(), purpose);
    assert.deepEqual([plan.aptInstall, plan.kernel, plan.stop, plan.advice], [[], "ok", [], []]);
    const sys = fakeSystem([allThere()]);
    const result = await runSetup(purpose, sys);
    assert.deepEqual(sys.commands, []);
    assert.equal(sys.probes, 1, "probed once: nothing changed");
    assert.deepEqual(result.installed, []);
    const ticks = result.lines.filter((l) => l.startsWith("  ✓ "));
    // The report needs neither the Vulkan driver, Chromium, the CJK font nor GNU parallel: not
    // listed for it.
    assert.equal(ticks.length, purpose === "test" ? 9 : 5, result.lines.join("\n"));
    assert.ok(result.lines.every((l) => !/✗|–/.test(l)));
  }
  const lines = checklist(planSetup(allThere(), "test"), []);
  assert.match(lines.join("\n"), /nbconvert 6\.5\.3, nbclient 0\.7\.2, jupyter-client 7\.4\.9/);
  assert.match(lines.join("\n"), /Vulkan driver .*: lvp$/m);
});

Deno.test("as root, each missing piece is installed with its Debian packages only", async () => {
  for (const id of Object.keys(PACKAGES) as Exclude<PieceId, "kernel">[]) {
    const plan = planSetup(without(id), "test");
    assert.deepEqual(plan.aptInstall, PACKAGES[id], id);
    assert.deepEqual(plan.stop, [], id);
    const sys = fakeSystem([without(id), allThere()]);
    const result = await runSetup("test", sys);
    assert.deepEqual(sys.commands, [
      "apt-get update -qq",
      `apt-get install -y -qq ${PACKAGES[id].join(" ")}`,
    ], id);
    assert.equal(sys.probes, 2, `${id}: probed again after installing`);
    assert.deepEqual(result.installed, [`apt-get: ${PACKAGES[id].join(" ")}`]);
    assert.match(result.lines.join("\n"), new RegExp(`installed: apt-get: ${PACKAGES[id][0]}`));
  }
});

Deno.test("the report does not install what only the tests need", async () => {
  for (const id of ["vulkan", "chromium", "cjkfont"] as const) {
    const sys = fakeSystem([without(id)]);
    await runSetup("report", sys);
    assert.deepEqual(sys.commands, [], id);
  }
  assert.deepEqual(planSetup(without("openblas"), "report").aptInstall, ["libopenblas0-pthread"]);
  // the notebook UI comes with the report where apt-get can install it; without, it is advice
  assert.deepEqual(planSetup(without("notebookui"), "report").aptInstall, ["jupyter-notebook"]);
  const noApt = { ...without("notebookui"), aptGet: false };
  assert.deepEqual(planSetup(noApt, "report").advice, ["pip install jupyterlab"]);
  assert.deepEqual(planSetup(noApt, "report").stop, []);
});

Deno.test("the Deno kernel is registered when absent and re-registered when it runs another Deno", async () => {
  const absent = fakeSystem([without("kernel", { ...allThere(), root: false }), allThere()]);
  const r = await runSetup("report", absent);
  assert.deepEqual(absent.commands, ["deno jupyter --install"], "no root needed for the kernel");
  assert.deepEqual(r.installed, ["Deno kernel (deno jupyter --install)"]);
  const f = allThere();
  const stale = { ...f, denoKernel: { ...f.denoKernel!, argv0: "/old/deno", argv0Real: null } };
  assert.equal(planSetup(stale, "test").kernel, "reinstall");
  assert.match(
    checklist(planSetup(stale, "test"), []).join("\n"),
    /✗ Deno Jupyter kernel: .* runs \/old\/deno \(absent\), not this Deno/,
  );
  const sys = fakeSystem([stale, allThere()]);
  await runSetup("test", sys);
  assert.deepEqual(sys.commands, ["deno jupyter --install --force"]);
});

Deno.test("not root: stops with the exact apt-get command for what is required, runs nothing", async () => {
  const user = { ...allThere(), root: false, sudo: true };
  const f = without("jupyter", without("chromium", without("openblas", user)));
  const plan = planSetup(f, "test");
  assert.deepEqual(plan.aptInstall, []);
  assert.deepEqual(plan.stop, [
    "sudo apt-get install -y jupyter-nbconvert python3-nbclient jupyter-client chromium",
  ]);
  // OpenBLAS only speeds training up: advised, never a reason to stop.
  assert.deepEqual(plan.advice, ["sudo apt-get install -y libopenblas0-pthread"]);
  const sys = fakeSystem([f]);
  await assert.rejects(runSetup("test", sys), (e: Error) => {
    assert.ok(e instanceof SetupError);
    assert.match(
      e.message,
      /Missing for the tests: Jupyter \(nbconvert, nbclient, jupyter-client\), Chromium .*\.\nInstall with:\n {2}sudo apt-get install -y jupyter-nbconvert python3-nbclient jupyter-client chromium\nthen run `deno task test` again/,
    );
    assert.match(e.message, /✗ Jupyter .*: missing: nbclient/);
    assert.doesNotMatch(e.message, /\n\s+at /, "no stack trace");
    return true;
  });
  assert.deepEqual(sys.commands, []);
  // Without sudo the command says it must run as root.
  assert.deepEqual(planSetup({ ...f, sudo: false }, "report").stop, [
    "apt-get install -y jupyter-nbconvert python3-nbclient jupyter-client   (as root)",
  ]);
});

Deno.test("not root, only optional pieces missing: no stop, the advice is in the checklist", async () => {
  const f = without("onednn", { ...allThere(), root: false, sudo: true });
  const sys = fakeSystem([f]);
  const r = await runSetup("test", sys);
  assert.deepEqual(sys.commands, []);
  assert.match(r.lines.join("\n"), /– oneDNN 2\.x .*: missing: convolutions run on OpenBLAS/);
  assert.match(r.lines.join("\n"), /optional, for speed: sudo apt-get install -y libdnnl2/);
});

Deno.test("no apt-get: pip for Jupyter, in words for the rest; no Vulkan needed off Linux", () => {
  const f = { ...allThere(), aptGet: false, jupyter: { ...allThere().jupyter, nbconvert: null } };
  assert.deepEqual(planSetup(without("chromium", f), "test").stop, [
    "pip install nbconvert nbclient jupyter-client",
    "install Chromium and set CHROMIUM to its path",
  ]);
  const mac = { ...allThere(), os: "darwin", aptGet: false, vulkan: [], onednn: null };
  const plan = planSetup(without("openblas", mac), "test");
  assert.deepEqual(plan.stop, []);
  assert.deepEqual(plan.advice, ["brew install openblas"]);
});

Deno.test("a failed apt-get stops with its output and the command; still missing after install is named", async () => {
  const sys = fakeSystem([without("chromium")], { "apt-get install": 100 });
  await assert.rejects(
    runSetup("test", sys),
    /`apt-get install -y -qq chromium` failed \(exit 100\):\n {4}E: Unable to locate package chromium\nRun `apt-get install -y chromium` to see why/,
  );
  const env = { ...without("chromium"), chromiumEnv: "/opt/chrome" };
  await assert.rejects(
    runSetup("test", fakeSystem([env])),
    /still missing: Chromium \(checks the exported HTML\) \(CHROMIUM=\/opt\/chrome does not exist\)/,
  );
});

Deno.test("scripts/setup.ts answers --help, and an unknown argument with one line and the usage", async () => {
  const script = new URL("../scripts/setup.ts", import.meta.url).pathname;
  const run = async (args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  };
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^deno task setup \[test\|report\]\n/);
  const bad = await run(["tset"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^setup: expected `test` or `report`, got tset\n\ndeno task setup/);
});

Deno.test("apt-get waits for another package manager's dpkg lock (a few minutes at most), saying so once", async () => {
  const LOCKED = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 " +
    "(unattended-upgr)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend)";
  /** apt-get answers "locked" `busy` times, then succeeds; waits are counted, not slept. */
  const lockedFor = (busy: number) => {
    const sys = {
      ...fakeSystem([without("chromium"), allThere()]),
      slept: 0,
      sleep(ms: number) {
        sys.slept += ms;
        return Promise.resolve();
      },
    };
    const run = sys.run;
    sys.run = (cmd: string, args: string[]) =>
      cmd === "apt-get" && busy-- > 0
        ? (sys.commands.push(`apt-get ${args.join(" ")}`),
          Promise.resolve({ code: 100, output: LOCKED }))
        : run(cmd, args);
    return sys;
  };
  const lines: string[] = [];
  const waiting = lockedFor(3);
  const r = await runSetup("test", waiting, (l) => lines.push(l));
  assert.deepEqual(r.installed, ["apt-get: chromium"]);
  assert.equal(waiting.commands.filter((c) => c === "apt-get update -qq").length, 4, "tried again");
  assert.equal(waiting.slept, 30_000, "three waits of 10 s");
  const said = lines.filter((l) => l.includes("holds the dpkg lock"));
  assert.equal(said.length, 1, lines.join("\n"));
  assert.match(said[0], /\(PID 812, unattended-upgr\) .*waiting for it, up to 5 min/);

  const stuck = lockedFor(1000);
  await assert.rejects(runSetup("test", stuck, () => {}), (e: Error) => {
    assert.ok(e instanceof SetupError);
    assert.match(e.message, /still holds the dpkg lock after 5 min .*\n.*Could not get lock/s);
    assert.match(e.message, /Wait for it to finish, then run `deno task test` again\.$/);
    return true;
  });
  assert.equal(stuck.slept, APT_LOCK_WAIT_S * 1000, "gave up after the limit");
});

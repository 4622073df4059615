/**
 * Silences the one Node deprecation warning our npm dependencies trigger at import and that we
 * cannot fix: vega-loader's Node build requires node-fetch@2, whose whatwg-url@5 → tr46 use
 * Node's built-in `punycode` module (DEP0040). The study never fetches through vega (specs carry
 * their data inline), so the warning tells a user nothing they can act on. Every other warning,
 * deprecations included, still prints. Import this module before `vega`.
 */
import process from "node:process";

/** The warning codes dropped here; each is explained above. */
const SILENCED_WARNINGS: readonly string[] = ["DEP0040"];

type EmitWarning = typeof process.emitWarning;
const emit: EmitWarning = process.emitWarning.bind(process);

/** Whether a warning, as passed to `process.emitWarning`, is one of the silenced ones. */
function isSilenced(warning: string | Error, rest: unknown[]): boolean {
  const options = rest[0];
  const code = typeof options === "object" && options !== null
    ? (options as { code?: string }).code
    : typeof rest[1] === "string"
    ? rest[1]
    : (warning as { code?: string }).code;
  return code !== undefined && SILENCED_WARNINGS.includes(code);
}

process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  if (isSilenced(warning, rest)) return;
  (emit as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
}) as EmitWarning;

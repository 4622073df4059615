/**
 * The process environment as the library reads it: one place for environment variables
 * (quietly unset when the process has no --allow-env) and for the repository's root folder.
 */
import { fileURLToPath } from "node:url";

/** The repository root, found from this file so notebooks work whatever their working directory. */
export const REPO_ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** An environment variable, or undefined when it is unset, empty, or not readable (no --allow-env). */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

/** A path as the repository names it (relative to its root) when it lies inside, else as given. */
export function repoRelative(path: string): string {
  return path.startsWith(REPO_ROOT) ? path.slice(REPO_ROOT.length).replace(/\/$/, "") || "." : path;
}

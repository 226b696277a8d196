// targets.mjs — the two servers every client test runs against: `modelhub serve` on
// stories260K (model "stories") and the hub with it as model "story" (key sk-test unless
// { key: false }). forEachTarget(suite) calls suite(name, start) once for each; start() returns
// { srv, base, model } and srv.stop() ends it.
import { STORIES, startServe, startHub } from "../e2e/lib.mjs";

export function forEachTarget(suite, { key = true } = {}) {
  suite("modelhub serve", async () => {
    const srv = await startServe(["-m", STORIES, "--alias", "stories"]);
    return { srv, base: srv.base, model: "stories" };
  });
  suite("modelhub hub", async () => {
    const keys = key ? "api_keys: [sk-test]\n" : "";
    const srv = await startHub(`${keys}models:\n  - name: story\n    model_path: ${STORIES}\n`);
    return { srv, base: srv.base, model: "story" };
  });
}

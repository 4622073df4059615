# nbconvert configuration that scripts/report.ts passes as `jupyter nbconvert --config <this file>`.
#
# Why: Deno's Jupyter kernel (2.x) sometimes publishes a cell's `status: idle` on IOPub a fraction
# of a millisecond *before* that cell's `execute_result` (about one cell in ten on a 2-core
# machine). nbclient, which nbconvert runs, stops reading a cell's outputs at `idle`, so such a
# cell's value (a table, a findings paragraph) was silently missing from the executed notebook and
# the HTML page. JupyterLab shows late messages, so only batch execution loses them.
#
# What: after `idle`, keep reading IOPub until it has been quiet for GRACE_S and add any late
# output of the same cell. Messages of other cells are dropped, as nbclient does.
from queue import Empty

from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete
from nbclient.util import ensure_async

# The late message arrives ~0.2 ms after idle; a quarter second leaves room for a loaded machine.
GRACE_S = 0.25


async def _poll_output_msg_with_grace(self, parent_msg_id, cell, cell_index):
    assert self.kc is not None
    done = False
    while True:
        try:
            msg = await ensure_async(
                self.kc.iopub_channel.get_msg(timeout=GRACE_S if done else None)
            )
        except Empty:
            return
        if msg["parent_header"].get("msg_id") != parent_msg_id:
            continue
        try:
            self.process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            done = True


NotebookClient._async_poll_output_msg = _poll_output_msg_with_grace

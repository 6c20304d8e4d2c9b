"""``sharded_check`` as one of several processes under ``jax.distributed`` on this machine
(CPU collectives over gloo): the problems sharded over every process's devices against the
same problems on one device of this process.

``python tests/multihost_check.py PROCESS_ID N_PROCESSES PORT OUT.json CASE [CASE ...]``:
every process passes the whole panel and holds its own devices' individuals; the
optimiser of an ``estimate`` case runs on every process. Each process writes its own
``OUT.json`` (with its estimates, so that the test can check every process reached the same
numbers).
"""

import os
import sys

import jax

if __name__ == "__main__":
    process_id, n_processes, port = map(int, sys.argv[1:4])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", n_processes, process_id,
                               initialization_timeout=120)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sharded_check

    sharded_check.main(sys.argv[4], sys.argv[5:])

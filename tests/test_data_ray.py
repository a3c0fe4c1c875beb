"""The Ray executor survives a worker dying mid-job: one actor's process is killed
with SIGKILL while it holds a block; Ray starts the actor again (max_restarts) and
hands it the block again (max_task_retries); the job completes in the same call
with a store equal to the one-process run's, every block written once, every
reduction partial merged once.

One local Ray with two CPUs (as in tests/test_ray.py); two actors, each importing
TensorFlow and loading the shapes model, one of them twice (~60 s in all)."""

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need Ray: pip install 'lrpgraph[ray]'")

import lrpgraph  # noqa: E402
import lrpgraph.distributed.ray as lray  # noqa: E402
from lrpgraph.assets import load_shapes_model  # noqa: E402
from lrpgraph.data import ClassSum  # noqa: E402
from lrpgraph.evaluation.synthetic import single_object_dataset  # noqa: E402

pytestmark = pytest.mark.slow



def test_a_worker_killed_mid_block_is_restarted_and_the_job_completes(local_ray, tmp_path):
    x, y, _ = single_object_dataset(12, size=64, seed=3)
    driver = os.getpid()
    taken, pidfile, writes = (str(tmp_path / n) for n in ("taken", "pid", "writes.log"))

    # closures (pickled by value to the actors): the first block an actor computes
    # stops inside the target callable, with the actor's pid written down, until killed
    def target(xb, labels):
        if os.getpid() != driver:
            try:
                fd = os.open(taken, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                with open(pidfile + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.replace(pidfile + ".tmp", pidfile)
                time.sleep(600)
        return labels

    def model():
        # every Store.write_block of this actor process is logged (to count the writes of each block)
        from lrpgraph.data import store

        real = store.Store.write_block
        if not getattr(real, "logged", False):
            def logged(self, i, arrays):
                with open(writes, "a") as f:
                    f.write(f"{i} {os.getpid()}\n")
                return real(self, i, arrays)
            logged.logged = True
            store.Store.write_block = logged
        return load_shapes_model()

    analyzer = lrpgraph.create_analyzer("lrp.epsilon", load_shapes_model())
    ref = lrpgraph.explain_dataset(analyzer, (x, y), str(tmp_path / "single"), target=target, batch_size=4,
                                   metrics=["relevance_sum"], reductions=[ClassSum()], progress=False)
    killed = []

    def kill_when_held():
        deadline = time.monotonic() + 300
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.2)
        if os.path.exists(pidfile):
            pid = int(open(pidfile).read())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_when_held, daemon=True)
    killer.start()
    att = lray.explain_dataset(model, "lrp.epsilon", (x, y), str(tmp_path / "ray"), target=target, batch_size=4,
                               num_workers=2, metrics=["relevance_sum"], reductions=[ClassSum()], progress=False,
                               max_restarts=1, max_task_retries=1)
    killer.join(5)
    assert killed, "no actor took the block that waits to be killed"
    assert att.complete and att.computed == [0, 1, 2]
    lines = open(writes).read().split()
    blocks, pids = [int(b) for b in lines[::2]], set(lines[1::2])
    assert sorted(blocks) == [0, 1, 2], f"a block written twice (or not at all): {blocks}"
    assert str(killed[0]) not in pids  # the killed process wrote nothing; its restarted successor did
    assert att.store.job == ref.store.job
    for name in ref.store.arrays:
        assert att.store[name][:].tobytes() == ref.store[name][:].tobytes(), name
    got, want = att.reductions["class_sum"], ref.reductions["class_sum"]
    np.testing.assert_array_equal(got["count"], want["count"])  # each block merged once
    # the same float32 maps summed in float64, blocks merged in another order: float64 rounding
    np.testing.assert_allclose(got["sum"], want["sum"], rtol=1e-12, atol=1e-12 * np.abs(want["sum"]).max())

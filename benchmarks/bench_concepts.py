"""Conditional relevance for many channels in one call vs the same number of targets
batched vs separate calls (issue 22's speed check).

    python benchmarks/bench_concepts.py [--model shapes|vgg16] [--layer L] [--channels 64] [--n 2] [--repeat 3]
    python benchmarks/bench_concepts.py --model vgg16 --size 64 --channels 64 --n 1 --repeat 2
    python benchmarks/bench_concepts.py --mining 300      # shapes model: mining vs explain_dataset
    python benchmarks/bench_concepts.py --mining 300 --layers all   # every conv layer in one pass
    python benchmarks/bench_concepts.py --memory 500,2000 --layers all  # memory the mining adds, per size

Times (best of --repeat, after one warm-up call that traces):

* ``conditional``: one call, C seeds (one per channel of L) of one reverse pass;
* ``targets``: the plain method with C targets per sample batched (``analyze(x, (N, C) targets)``):
  the same batch of C * N seeds without masks -- the floor ``conditional`` is compared with;
* ``separate``: C calls of ``conditional`` with one channel each.

``--mining N``: reference_samples (rf=False: the statistics pass, top-k and class sums)
over N single-object images vs explain_dataset with the same preset over the same data
(one LRP pass per sample, maps stored), both into fresh stores, block size 50.
``--layers all``: mine every conv layer of the model in the one pass (``ALL_CONV``).
Both sides are built once and traced by a warm-up call (the analyzer, and a
:class:`~lrpgraph.concepts.ConceptStatistics` passed to ``reference_samples`` as its model);
the first calls' times (tracing included) are printed too.

``--memory 500,2000``: for each size, a fresh process makes the data, traces on 50
images, then mines all of it while a thread samples the resident set (VmRSS, every
10 ms); printed is the peak during the run minus the resident set just before it
(what the mining itself adds, the input array excluded).

VGG16 (block5_conv3, 224 x 224) is the issue's model; on a small CPU use the shapes model.
"""

import argparse
import time

import numpy as np

from lrpgraph.concepts import ConceptExplainer


def best(fn, repeat):
    fn()  # trace
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="shapes")
    p.add_argument("--layer", default=None)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--method", default="epsilon_plus_flat")
    p.add_argument("--mining", type=int, default=0)
    p.add_argument("--layers", default="block3_conv2", help="a layer, or 'all' (every conv layer)")
    p.add_argument("--size", type=int, default=224, help="vgg16: input height and width")
    p.add_argument("--memory", default=None, help="comma-separated dataset sizes")
    p.add_argument("--memory-one", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.memory_one:
        return memory_one(a)
    if a.memory:
        return memory(a)
    if a.mining:
        return mining(a)
    if a.model == "shapes":
        from lrpgraph.assets import load_shapes_model

        model, layer = load_shapes_model(), a.layer or "block3_conv2"
    else:
        import keras

        model, layer = getattr(keras.applications, {"vgg16": "VGG16"}.get(a.model, a.model))(
            weights=None, input_shape=(a.size, a.size, 3)), a.layer or "block5_conv3"
    ex = ConceptExplainer(model, a.method)
    shape = (a.n,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(0).random(shape).astype("float32")
    chans = list(range(a.channels))
    t_cond = best(lambda: ex.conditional(x, 0, {layer: chans}), a.repeat)
    t_tgt = best(lambda: ex.analyzer.analyze(x, np.zeros((a.n, a.channels), np.int64)), a.repeat)
    t_sep = best(lambda: [ex.conditional(x, 0, {layer: [c]}) for c in chans], 1)
    print(f"{a.model} {layer}, input {shape[1:]}, {a.channels} channels, N={a.n}, {a.method}")
    print(f"| conditional, {a.channels} seeds in one call | {t_cond:.3f} s | {t_cond / t_tgt:.2f}x |")
    print(f"| {a.channels} targets batched (plain method) | {t_tgt:.3f} s | 1.00x |")
    print(f"| {a.channels} separate conditional calls | {t_sep:.3f} s | {t_sep / t_tgt:.2f}x |")


def _layers(a):
    from lrpgraph.concepts import ALL_CONV

    return ALL_CONV if a.layers == "all" else a.layers


def mining(a):
    import tempfile

    import lrpgraph
    from lrpgraph.evaluation import synthetic
    from lrpgraph.assets import load_shapes_model
    from lrpgraph.concepts import ConceptStatistics, reference_samples

    model, layers = load_shapes_model(), _layers(a)
    x, y = synthetic.single_object_dataset(a.mining, seed=0)[:2]
    data = (x.astype("float32"), y)
    an = lrpgraph.create_analyzer(a.method, model)
    # built once, as the analyzer is: a fresh reference_samples(model, ...) call builds (and
    # traces) a new ConceptStatistics, which is the first-call cost printed below
    stats = ConceptStatistics(model, layer=layers, base=a.method)
    d = tempfile.mkdtemp()
    # warm-up runs trace both passes
    t = time.perf_counter()
    lrpgraph.explain_dataset(an, (data[0][:50], y[:50]), f"{d}/w1", batch_size=50, progress=False)
    t_trace_lrp = time.perf_counter() - t
    t = time.perf_counter()
    reference_samples(stats, (data[0][:50], y[:50]), layers, store=f"{d}/w2", batch_size=50, rf=False)
    t_trace_mine = time.perf_counter() - t
    t_lrp, t_mine = [], []
    for r in range(a.repeat):  # interleaved, so a noisy neighbour slows both alike
        t = time.perf_counter()
        lrpgraph.explain_dataset(an, data, f"{d}/maps{r}", batch_size=50, progress=False)
        t_lrp.append(time.perf_counter() - t)
        t = time.perf_counter()
        refs = reference_samples(stats, data, layers, store=f"{d}/concepts{r}", batch_size=50, rf=False)
        t_mine.append(time.perf_counter() - t)
    t_lrp, t_mine = min(t_lrp), min(t_mine)
    what = (f"{len(refs)} conv layers, {sum(len(v.channels) for v in refs.values())} channels"
            if isinstance(refs, dict) else f"{layers} ({len(refs.channels)} channels)")
    print(f"shapes, {a.mining} images, {a.method}, {what}, block 50, best of {a.repeat}")
    print(f"| explain_dataset (one LRP pass per sample, maps stored) | {t_lrp:.2f} s | 1.00x |")
    print(f"| reference_samples, rf=False (relevance + activation top-k, class sums) | {t_mine:.2f} s | "
          f"{t_mine / t_lrp:.2f}x |")
    print(f"first call on 50 images (traces): explain_dataset {t_trace_lrp:.2f} s, reference_samples "
          f"{t_trace_mine:.2f} s")


def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_one(a):
    import tempfile
    import threading

    from lrpgraph.evaluation import synthetic
    from lrpgraph.assets import load_shapes_model
    from lrpgraph.concepts import reference_samples

    model, layers = load_shapes_model(), _layers(a)
    x, y = synthetic.single_object_dataset(a.memory_one, seed=0)[:2]
    x = x.astype("float32")
    d = tempfile.mkdtemp()
    reference_samples(model, (x[:50], y[:50]), layers, store=f"{d}/w", batch_size=50, rf=False, method=a.method)
    base, peak, done = _rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.01)

    th = threading.Thread(target=watch)
    th.start()
    t = time.perf_counter()
    reference_samples(model, (x, y), layers, store=f"{d}/c", batch_size=50, rf=False, method=a.method)
    t = time.perf_counter() - t
    done.set()
    th.join()
    print(f"| {a.memory_one} | {(peak[0] - base) / 2**20:.1f} MiB | {base / 2**20:.0f} MiB | {t:.1f} s |")


def memory(a):
    import subprocess
    import sys

    print(f"shapes, reference_samples of {a.layers}, {a.method}, block 50, rf=False")
    print("| images | peak added during the run | resident before | time |")
    print("|---|---|---|---|")
    for n in a.memory.split(","):
        subprocess.run([sys.executable, __file__, "--memory-one", n, "--layers", a.layers, "--method", a.method],
                       check=True)


if __name__ == "__main__":
    main()

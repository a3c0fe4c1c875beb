"""The worked example of docs/concepts.md: concepts of the shapes model's block3_conv2.

    python scripts/concepts_figures.py [OUT_DIR]   (default docs/img/concepts)

Mines 50 samples per class of lrpgraph.evaluation.synthetic's single-object data, prints the
class statistics (the most relevant channels per class and their mean share) and
the purity of each top channel's reference samples (the share of its k relevance
references that belong to the class), and writes atlas.png, panel.png, graph.png.
"""

import os
import sys
import tempfile

import numpy as np

from lrpgraph import assets, synthetic
from lrpgraph.concepts import ConceptExplainer, attribution_graph, reference_samples
from lrpgraph.concepts_viz import concept_atlas, draw_attribution_graph, prediction_panel, reference_inputs
from lrpgraph.viz import save_figure

out = sys.argv[1] if len(sys.argv) > 1 else "docs/img/concepts"
model = assets.load_shapes_model()
x, y = synthetic.single_object_dataset(300, seed=7)[:2]
x = x.astype("float32")
ex = ConceptExplainer(model, "epsilon_plus_flat")
layer = "block3_conv2"
refs = reference_samples(ex.analyzer.model, (x, y), layer, k=6, store=os.path.join(tempfile.mkdtemp(), "c.zarr"),
                         batch_size=50)
names = synthetic.CLASS_NAMES
print("| class | samples | top channels (mean share) | purity of their k=6 references |")
print("|---|---|---|---|")
best = {}
for c, name in enumerate(names):
    top = refs.top_concepts(c, 3)
    best[name] = int(top[0])
    shares = ", ".join(f"{int(ch)} ({100 * refs.class_relevance[c, ch]:.0f}%)" for ch in top)
    purity = ", ".join(f"{int(np.mean(y[refs.indices[ch]] == c) * 100)}%" for ch in top)
    print(f"| {name} | {refs.class_count[c]} | {shares} | {purity} |")
samples = reference_inputs(refs, (x, y), ex.prepared, 50)
chans = []
for name in ("disk", "checker", "stripes", "ring"):  # each class's most relevant channel not yet shown
    c = names.index(name)
    chans.append(next(int(ch) for ch in refs.top_concepts(c, 5) if int(ch) not in chans))
save_figure(concept_atlas(ex, refs, samples, chans, k=4), os.path.join(out, "atlas.png"))
i = int(np.nonzero(y == names.index("checker"))[0][0])
save_figure(prediction_panel(ex, x[i], int(y[i]), layer, refs, samples), os.path.join(out, "panel.png"))
g = attribution_graph(ex, x[i], int(y[i]), layer, best["checker"], ["block3_conv1", "block2_conv2"], top=3)
save_figure(draw_attribution_graph(g, f"checker sample #{i}: {layer} channel {best['checker']}"),
            os.path.join(out, "graph.png"))
print("atlas channels", chans, "panel sample", i)

"""Faithfulness and sanity metrics for relevance maps, batched through the compiled model.

Each metric takes ``(model_or_prepared, x, relevance, target, ...)`` and returns
per-sample numbers (and curves where there are curves):

- :func:`region_perturbation` -- region perturbation / pixel flipping and AOPC
  (Samek et al., IEEE TNNLS 2017);
- :func:`deletion`, :func:`insertion` -- RISE's deletion and insertion AUC
  (Petsiuk et al., BMVC 2018);
- :func:`faithfulness_correlation` -- Bhatt et al., IJCAI 2020;
- :func:`model_randomisation`, :func:`data_randomisation` -- Adebayo et al.,
  "Sanity Checks for Saliency Maps", NeurIPS 2018.
- the rest of the field's metric set (issue 24), one module per group:
  :mod:`.faithfulness_more` (ROAD, IROF, infidelity, sufficiency, monotonicity,
  monotonicity correlation, faithfulness estimate, sensitivity-n),
  :mod:`.robustness`, :mod:`.complexity`, :mod:`.mprt` (smooth / efficient MPRT,
  random logit), :mod:`.localisation_metrics`, :mod:`.axiomatic`; each returns a
  :class:`MetricResult` with ``.score`` (N,).  :data:`GROUPS` lists them.

:func:`evaluate` runs several methods and metrics and returns an
:class:`EvaluationTable` (a dict of arrays with Markdown, text and CSV
renderings).  :data:`PER_SAMPLE_METRICS` maps metric names to
``fn(model_or_prepared, x, maps, targets) -> (N,)`` with default parameters (the
dataset runner's table).  All perturbed copies of a batch are scored inside one
compiled ``tf.function`` in chunks of ``batch_size`` images
(:func:`lrpgraph.evaluation.common.score_copies`).  Definitions: docs/evaluation.md.

Beside the faithfulness metrics, imported as modules:

- :mod:`~lrpgraph.evaluation.localisation`: maps against ground-truth masks (relevance
  mass, pointing game, negative share);
- :mod:`~lrpgraph.evaluation.two_object`: the two-object localisation benchmark
  (docs/benchmark_two_object.md) on :mod:`~lrpgraph.evaluation.synthetic`, the synthetic
  shapes (which also train the bundled shapes model);
- :mod:`~lrpgraph.evaluation.xai_tris`: the XAI-TRIS-style ground-truth benchmark
  (tetromino scenarios, tiny CNN/MLP trained from a seed, methods ranked with bootstrap
  intervals; ``lrpgraph benchmark xai-tris``);
- :mod:`~lrpgraph.evaluation.check`: ``lrpgraph.check(model)``, what the engine makes of a
  model (op kinds, each preset's rule per node, the rewritten logits against Keras's).
"""

from .axiomatic import completeness, input_invariance, non_sensitivity
from .common import baseline_images, region_ranks, region_relevance, score_copies
from .complexity import effective_complexity, gini, sparseness
from .copies import MetricResult
from .faithfulness import FaithfulnessCorrelation, faithfulness_correlation
from .faithfulness_more import (faithfulness_estimate, infidelity, irof, monotonicity, monotonicity_correlation,
                                road, sensitivity_n, sufficiency)
from .localisation_metrics import relevance_rank_accuracy, roc_auc, top_k_intersection
from .mprt import efficient_mprt, random_logit, smooth_mprt
from .perturbation import PerturbationCurve, auc, deletion, insertion, region_perturbation
from .randomisation import (SIMILARITIES, RandomisationResult, data_randomisation, model_randomisation,
                            similarities)
from .robustness import (avg_sensitivity, continuity, local_lipschitz_estimate, max_sensitivity,
                         relative_input_stability, relative_output_stability, relative_representation_stability)
from .table import (BETTER, GROUPS, METRICS, NEEDS_MASKS, NEEDS_METHOD, PER_SAMPLE_METRICS, EvaluationTable,
                    evaluate, expand_metrics)

__all__ = ["region_perturbation", "deletion", "insertion", "auc", "PerturbationCurve", "faithfulness_correlation",
           "FaithfulnessCorrelation", "model_randomisation", "data_randomisation", "similarities",
           "RandomisationResult", "SIMILARITIES", "evaluate", "EvaluationTable", "METRICS", "PER_SAMPLE_METRICS",
           "BETTER", "expand_metrics", "baseline_images", "region_ranks", "region_relevance", "score_copies",
           # the rest of the field's metric set, one module per group (``evaluation.complexity.complexity``
           # is not re-exported here: the name is its module's)
           "MetricResult", "road", "irof", "infidelity", "sufficiency", "monotonicity", "monotonicity_correlation",
           "faithfulness_estimate", "sensitivity_n", "max_sensitivity", "avg_sensitivity",
           "local_lipschitz_estimate", "continuity", "relative_input_stability", "relative_output_stability",
           "relative_representation_stability", "sparseness", "effective_complexity", "gini", "smooth_mprt",
           "efficient_mprt", "random_logit", "relevance_rank_accuracy", "top_k_intersection", "roc_auc",
           "completeness", "input_invariance", "non_sensitivity", "GROUPS", "NEEDS_METHOD", "NEEDS_MASKS"]

"""The engine: a Keras model in, one compiled relevance pass out, in four stages.

keras.Model -> :mod:`~lrpgraph.engine.graph` (one node per layer call) ->
:mod:`~lrpgraph.engine.ops` (what each node computes, as rules see it) ->
:mod:`~lrpgraph.engine.rewrite` (canonical graph) -> :mod:`~lrpgraph.engine.prepared`
(the rewritten graph, specs, validation, logits: once per model) ->
:mod:`~lrpgraph.engine.assign` (a rule per node) -> :mod:`~lrpgraph.engine.compile`
(forward, :mod:`~lrpgraph.engine.heads`, reverse pass in one ``tf.function``; rules see a
:class:`~lrpgraph.engine.context.Context`).

The engine imports nothing above it: not the rule library (``lrpgraph.rules``: rules
import the engine's :class:`~lrpgraph.engine.context.Context` and op descriptions), not
the methods, the dataset runner, the evaluation, the CLI or the helpers that read files
and draw pictures (``tests/test_layout.py`` checks it).
"""

"""The rule-selector grammar (lrpgraph/engine/assign.py, docs/rules.md "Selectors") as tables.

No model is built: ``match`` is checked on hand-made ``NodeInfo`` objects, and
``assign_rules`` on a five-node networkx graph whose ops are stubs (only ``kind``,
``subkind`` and ``meta`` are read) with stub layer classes.
"""

from types import SimpleNamespace

import networkx as nx
import pytest

from lrpgraph.engine.assign import NodeInfo, UnsupportedLayerError, assign_rules, first_layers, match
from lrpgraph.rules import Epsilon, Flat, Gradient, Pass, Z
from lrpgraph.rules.presets import P, spec


# ---- stub layer classes (class objects and class: selectors see only the Python type) -----

class Layer:
    pass


class BaseConv(Layer):
    pass


class Conv2D(BaseConv):
    pass


class Dense(Layer):
    pass


class Doubler(Layer):
    """A custom layer: its op kind is 'unknown'."""


def info(name, class_name, kind, subkind=None, layer=None, is_first=False):
    return NodeInfo(name, class_name, kind, subkind, layer, is_first)


CONV = info("block1_conv1", "Conv2D", "linear", "conv2d", Conv2D(), is_first=True)
CONV_CALL2 = info("block1_conv1#1", "Conv2D", "linear", "conv2d", Conv2D())  # second call of the layer
RELU = info("block1_conv1/relu", "Activation", "elementwise", "relu")  # fused activation split off
DENSE = info("fc", "Dense", "linear", "dense", Dense())
NESTED = info("inner/conv", "Conv2D", "linear", "conv2d", Conv2D())  # inlined nested model
ADD = info("add", "Add", "add")
MINE = info("mine", "Doubler", "unknown", None, Doubler())

NODES = {"conv": CONV, "conv#1": CONV_CALL2, "relu": RELU, "dense": DENSE, "nested": NESTED, "add": ADD,
         "mine": MINE}

# selector -> the nodes (keys of NODES) it selects; every other node must not match.
MATCH_TABLE = [
    # bare layer name / node id: every call of the layer, the id alone, no prefixes
    ("block1_conv1", {"conv", "conv#1"}),
    ("block1_conv1#1", {"conv#1"}),
    ("block1_conv", set()),
    ("block1_conv1/relu", {"relu"}),
    ("inner/conv", {"nested"}),
    ("conv", set()),
    # name: is the same as a bare name
    ("name:block1_conv1", {"conv", "conv#1"}),
    ("name:fc", {"dense"}),
    ("name:f", set()),
    # re: full match against the node id or the layer name
    ("re:block1_.*", {"conv", "conv#1", "relu"}),
    ("re:block1", set()),
    ("re:block1_conv1", {"conv", "conv#1"}),
    ("re:.*#1", {"conv#1"}),
    ("re:.*conv.*", {"conv", "conv#1", "relu", "nested"}),
    # class: the class name, or any base class name of the layer
    ("class:Conv2D", {"conv", "conv#1", "nested"}),
    ("class:BaseConv", {"conv", "conv#1", "nested"}),
    ("class:Layer", {"conv", "conv#1", "dense", "nested", "mine"}),
    ("class:Activation", {"relu"}),
    ("class:Dense", {"dense"}),
    ("class:Conv", set()),
    # kind: op kind or kind/subkind, shell wildcards
    ("kind:linear", {"conv", "conv#1", "dense", "nested"}),
    ("kind:linear/dense", {"dense"}),
    ("kind:linear/conv*", {"conv", "conv#1", "nested"}),
    ("kind:linear/conv2d", {"conv", "conv#1", "nested"}),
    ("kind:linear/conv1d", set()),
    ("kind:linear/*", {"conv", "conv#1", "dense", "nested"}),
    ("kind:lin*", {"conv", "conv#1", "dense", "nested"}),
    ("kind:elementwise/relu", {"relu"}),
    ("kind:elementwise/gelu", set()),
    ("kind:*/relu", {"relu"}),
    ("kind:add", {"add"}),
    ("kind:add/*", set()),  # a node without subkind has no kind/subkind path
    ("kind:unknown", {"mine"}),
    ("kind:*", set(NODES)),  # match() sees every node; assign_rules keeps unknown ops out of it
    # first: linear nodes fed by an input through no other linear node
    ("first", {"conv"}),
    # class objects: isinstance on the layer (a node without a layer never matches)
    (Conv2D, {"conv", "conv#1", "nested"}),
    (BaseConv, {"conv", "conv#1", "nested"}),
    (Dense, {"dense"}),
    (Layer, {"conv", "conv#1", "dense", "nested", "mine"}),
    # predicates on NodeInfo; the result is taken as a bool
    (lambda i: i.kind == "linear" and not i.is_first, {"conv#1", "dense", "nested"}),
    (lambda i: i.subkind, {"conv", "conv#1", "relu", "dense", "nested"}),
    (lambda i: i.kind_path == "elementwise/relu", {"relu"}),
]


@pytest.mark.parametrize("selector,selected", MATCH_TABLE,
                         ids=[s if isinstance(s, str) else getattr(s, "__name__", "fn") + str(i)
                              for i, (s, _) in enumerate(MATCH_TABLE)])
def test_match_table(selector, selected):
    got = {k for k, node in NODES.items() if match(selector, node)}
    assert got == selected


@pytest.mark.parametrize("selector", ["klass:Conv2D", "kinds:linear", "regex:.*"])
def test_unknown_selector_prefix_is_an_error(selector):
    with pytest.raises(ValueError, match=r"unknown selector .*use kind:, class:, name:, re:, 'first' or a callable"):
        match(selector, CONV)


def test_kind_path():
    assert CONV.kind_path == "linear/conv2d" and ADD.kind_path == "add"


# ---- assign_rules on a hand-built graph ----------------------------------------------------
#   in -> conv (Conv2D, linear/conv2d) -> conv/relu (elementwise) -> mine (unknown) -> fc (Dense)

def stub_graph():
    g = nx.MultiDiGraph()

    def add(n, kind, subkind, class_name, layer=None, inputs=(), **fields):
        g.add_node(n, name=n, op=SimpleNamespace(kind=kind, subkind=subkind, **fields),
                   class_name=class_name, layer=layer)
        for slot, u in enumerate(inputs):
            g.add_edge(u, n, out=0, slot=slot)

    add("in", "input", None, "InputLayer")
    add("conv", "linear", "conv2d", "Conv2D", Conv2D(), ["in"])
    add("conv/relu", "elementwise", "relu", "Activation", None, ["conv"])
    add("mine", "unknown", None, "Doubler", Doubler(), ["conv/relu"], reason="custom layer class Doubler")
    add("fc", "linear", "dense", "Dense", Dense(), ["mine"])
    g.graph["inputs"] = ["in"]
    return g


EPS, FLAT, GRAD, GRAD2, PASS, Z0 = Epsilon(0.5), Flat(), Gradient(), Gradient(), Pass(), Z()


def preset(*rules, name="stub"):
    return SimpleNamespace(name=name, rules=tuple(rules))


# a preset like the gradient family's: a catch-all kind:* entry
CATCH_ALL = preset(("kind:linear", Z0), ("kind:elementwise", PASS), ("kind:*", GRAD))


def test_first_layers_of_the_stub_graph():
    assert first_layers(stub_graph()) == {"conv"}


# overrides -> the rule each node gets (None: UnsupportedLayerError naming 'mine')
ASSIGN_TABLE = [
    # an unknown op: never accepted by a preset entry, nor by a wildcard kind: override
    ("no overrides", None, None),
    ("kind:* override", {"kind:*": GRAD}, None),
    ("kind:u* override", {"kind:u*": GRAD}, None),  # a kind: override must say 'unknown' literally
    # ... only by an override that names it
    ("name", {"mine": GRAD}, {"conv": Z0, "conv/relu": PASS, "mine": GRAD, "fc": Z0}),
    ("name:", {"name:mine": GRAD}, {"mine": GRAD}),
    ("re:", {"re:mi.e": GRAD}, {"mine": GRAD}),
    ("class:", {"class:Doubler": GRAD}, {"mine": GRAD}),
    ("class object", {Doubler: GRAD}, {"mine": GRAD}),
    ("predicate", {(lambda i: i.class_name == "Doubler"): GRAD}, {"mine": GRAD}),
    ("kind:unknown", {"kind:unknown": GRAD}, {"mine": GRAD}),
    # an explicit override may give an unknown op any rule: the user decides
    ("any rule on unknown", {"mine": PASS}, {"mine": PASS}),
    # a wildcard override before the naming one: the unknown op skips the wildcard
    ("wildcard then name", [("kind:*", GRAD2), ("mine", GRAD)],
     {"conv": GRAD2, "conv/relu": GRAD2, "mine": GRAD, "fc": GRAD2}),
    # the first matching entry wins, overrides before the preset
    ("first before kind:linear", [("mine", GRAD), ("first", FLAT), ("kind:linear", EPS)],
     {"conv": FLAT, "conv/relu": PASS, "mine": GRAD, "fc": EPS}),
    ("kind:linear before first", [("mine", GRAD), ("kind:linear", EPS), ("first", FLAT)],
     {"conv": EPS, "fc": EPS}),
    ("override beats preset", {"mine": GRAD, "kind:linear/dense": EPS}, {"conv": Z0, "fc": EPS}),
    ("rule class is instantiated", {"mine": GRAD, "fc": Flat}, {"fc": Flat}),
]


@pytest.mark.parametrize("case,overrides,expected", ASSIGN_TABLE, ids=[c for c, _, _ in ASSIGN_TABLE])
def test_assign_rules_table(case, overrides, expected):
    g = stub_graph()
    if expected is None:
        with pytest.raises(UnsupportedLayerError,
                           match=r"layer 'mine' of class Doubler is not supported: custom layer class Doubler\. "
                                 r"Say what the layer computes with lrpgraph\.register_layer\(Doubler, describe\).*"
                                 r"attach a rule to it with overrides, e\.g\. .*overrides=\{'mine': "):
            assign_rules(g, CATCH_ALL, {}, overrides)
        return
    got = assign_rules(g, CATCH_ALL, {}, overrides)
    assert set(got) == {"conv", "conv/relu", "mine", "fc"}  # every node but the input
    for n, rule in expected.items():
        if isinstance(rule, type):
            assert type(got[n]) is rule, n
        else:
            assert got[n] is rule, n


# a rule whose kinds exclude the node's kind is an error at construction
MISMATCH_TABLE = [
    ({"fc": PASS}, r"rule Pass\(\) selected for node 'fc' \(Dense, op kind 'linear'\) handles only "
                   r"\('elementwise', 'reshape', 'noise', 'softmax'\); choose another rule in overrides"),
    ({"conv/relu": EPS}, r"rule Epsilon\(epsilon=0\.5, bias=True\) selected for node 'conv/relu' \(Activation, "
                         r"op kind 'elementwise'\) handles only \('linear', 'add', 'pool_avg'\)"),
    ({"class:Conv2D": FLAT}, None),  # Flat on a linear op: fine
]


@pytest.mark.parametrize("overrides,msg", MISMATCH_TABLE)
def test_rule_kind_mismatch_is_an_error(overrides, msg):
    overrides = {"mine": GRAD, **overrides}
    if msg is None:
        assign_rules(stub_graph(), CATCH_ALL, {}, overrides)
        return
    with pytest.raises(UnsupportedLayerError, match=msg):
        assign_rules(stub_graph(), CATCH_ALL, {}, overrides)


def test_preset_specs_take_parameters_and_are_built_once():
    p = preset(("kind:linear", spec(Epsilon, epsilon=P("epsilon"))), ("kind:elementwise", spec(Pass)),
               ("kind:*", spec(Gradient)))
    got = assign_rules(stub_graph(), p, {"epsilon": 0.25}, {"mine": GRAD})
    assert isinstance(got["conv"], Epsilon) and got["conv"].epsilon == 0.25
    assert got["conv"] is got["fc"]  # one rule object per preset entry


def test_preset_without_an_entry_for_a_kind():
    p = preset(("kind:linear", Z0), name="linear_only")
    with pytest.raises(UnsupportedLayerError, match=r"layer 'conv/relu' of class Activation is not supported: "
                                                    r"preset 'linear_only' has no rule for op kind 'elementwise'"):
        assign_rules(stub_graph(), p, {}, {"mine": GRAD})


def test_nodes_restricts_the_assignment():
    # without 'mine' in the nodes asked for, its missing rule is not an error
    got = assign_rules(stub_graph(), CATCH_ALL, {}, nodes={"conv", "conv/relu"})
    assert got == {"conv": Z0, "conv/relu": PASS}


def test_not_a_rule_is_a_type_error():
    with pytest.raises(TypeError, match=r"is not a rule: pass a Rule instance"):
        assign_rules(stub_graph(), CATCH_ALL, {}, {"mine": "gradient"})

"""lrpgraph.targets: class names, folder labels."""

import numpy as np
import pytest

from lrpgraph import assets, targets
from lrpgraph.errors import InputError


def test_imagenet_class_folders_by_name_wnid_or_index():
    names, wnids = assets.imagenet_class_names(), assets.imagenet_wnids()
    assert wnids[281] == "n02123045" and names[281] == "tabby"
    got = targets.folder_class_indices(["n02123045", "tabby", "Zebra", "african_elephant", "7"], names, wnids)
    assert got.tolist() == [281, 281, 340, 386, 7] and got.dtype == np.int64


def test_unknown_and_ambiguous_class_folders_are_refused():
    names, wnids = assets.imagenet_class_names(), assets.imagenet_wnids()
    with pytest.raises(ValueError, match=r"class folder 'zebbra' is not a class of vgg16 \(did you mean zebra\?\)"):
        targets.folder_class_indices(["cat", "zebbra"][1:], names, wnids, model="vgg16")
    # ImageNet names two classes "crane" (the bird, 134, and the machine, 517): only the wnid says which
    with pytest.raises(ValueError, match=r"'crane' names 2 classes .*n02012849 \(class 134\) or n03126707 \(class 517\)"):
        targets.folder_class_indices(["crane"], names, wnids)
    assert targets.folder_class_indices(["n03126707"], names, wnids).tolist() == [517]


def test_parse_text_is_the_one_vocabulary_of_the_commands():
    names = ["cat", "dog", "sea lion"]
    assert targets.parse_text(None) is None and targets.parse_text("predicted") is None
    assert targets.parse_text(" Predicted ") is None and targets.parse_text("") is None
    assert targets.parse_text("label", keywords=("label", "predicted")) == "label"
    assert targets.parse_text("2", names, 3) == 2 and targets.parse_text("Sea-Lion", names, 3) == 2
    assert targets.parse_text("0,dog", names, 3, several=True) == [0, 1]
    with pytest.raises(InputError, match="out of range: the model has 3 classes") as e:
        targets.parse_text("3", names, 3)
    assert e.value.param == "target"
    with pytest.raises(InputError, match="has no labels") as e:
        targets.parse_text("label")
    with pytest.raises(InputError, match="the model has no class names") as e:
        targets.parse_text("cat", None, 3)
    assert e.value.param == "labels"


def test_to_indices_and_check_spec():
    t, multi = targets.to_indices(None, 3, 5)
    assert t.tolist() == [targets.PREDICTED] * 3 and t.dtype == np.int32 and not multi
    assert targets.to_indices(2, 3, 5)[0].tolist() == [2, 2, 2]
    assert targets.to_indices(np.array([1.0, 2.0, 0.0]), 3, 5)[0].tolist() == [1, 2, 0]
    t, multi = targets.to_indices([["a", "b"]] * 2, 2, 2, ["a", "b"])
    assert multi and t.tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="out of range"):
        targets.to_indices([0, 5], 2, 5)
    with pytest.raises(ValueError, match="needs a target"):
        targets.to_indices(None, 2, 5, required=True)
    assert targets.check_spec(None) == "predicted" and targets.check_spec([1, 2]) == (1, 2)
    with pytest.raises(TypeError):
        targets.check_spec(True)
    assert targets.describe(np.zeros(3, int)).startswith("array (3,) sha256 ")


def test_predicted_is_resolved_the_same_in_numpy_and_in_the_graph():
    import tensorflow as tf

    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]], np.float32)
    t = np.array([targets.PREDICTED, 2], np.int32)
    assert targets.resolve_predicted(logits, t).tolist() == [1, 2]
    assert targets.resolve_predicted_tf(tf.constant(logits), tf.constant(t)).numpy().tolist() == [1, 2]
    calls = []

    def logits_fn():
        calls.append(1)
        return tf.constant(logits)

    assert targets.resolve_predicted_tf_lazily(logits_fn, tf.constant(t)).numpy().tolist() == [1, 2]
    both = np.array([[targets.PREDICTED, 0], [1, targets.PREDICTED]], np.int32)  # (N, T)
    assert targets.resolve_predicted(logits, both).tolist() == [[1, 0], [1, 0]]

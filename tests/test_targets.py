"""lrpgraph.targets: class names, folder labels."""

import numpy as np
import pytest

from lrpgraph import assets, targets


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

"""Class names: the shipped ImageNet names and finding a class by name or synonym."""
from __future__ import annotations

import pytest

from gradcam.models.classes import find_class, imagenet_class_names, imagenet_synonyms
from gradcam.errors import UsageError


def test_imagenet_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby" and names[0] == "tench"


def test_find_class_by_name_and_synonym():
    names, synonyms = imagenet_class_names(), imagenet_synonyms()
    assert find_class("tabby", names, synonyms) == 281
    assert find_class("Tabby Cat", names, synonyms) == 281
    assert find_class("great_white_shark", names, synonyms) == 2
    with pytest.raises(UsageError, match="did you mean 'tabby'"):
        find_class("taby", names, synonyms)
    with pytest.raises(UsageError, match="--labels"):
        find_class("cat", None)

"""The models one service offers (`--checkpoint`/`--best` plus `--models`), named and checked before Ray starts."""

import pytest

from draw_service.serve.config import SHIPPED_ROOT, catalogue, default_name, shipped_models


@pytest.mark.parametrize("checkpoint, name", [
    ("models/mnist-attention", "mnist-attention"),
    ("models/mnist-attention/", "mnist-attention"),
    ("runs/My Run/checkpoint_0000100", "my-run"),
    ("s3://bucket/runs/x/checkpoint_0000100/checkpoint.pt", "x"),
    ("model.pt", "model"),
])
def test_the_default_model_is_named_after_its_folder(checkpoint, name):
    assert default_name(checkpoint, None) == name


def test_a_searchs_best_record_is_named_best():
    assert default_name(None, "s3://b/search/best.json") == "best"
    assert catalogue(None, "s3://b/search", "") == ("best", {"best": "s3://b/search"})


def test_shipped_adds_every_model_of_the_repository_beside_the_default():
    shipped = shipped_models()
    assert {"mnist-attention", "cifar10-attention"} <= set(shipped)
    first, offered = catalogue("runs/demo/checkpoint_0000010", None, "shipped, extra=s3://b/x")
    assert first == "demo"
    assert list(offered) == ["demo", *shipped, "extra"]
    assert offered["extra"] == "s3://b/x"
    assert offered["mnist-attention"] == str(SHIPPED_ROOT / "mnist-attention")


def test_serving_a_shipped_model_and_all_the_shipped_ones_names_it_once():
    path = str(SHIPPED_ROOT / "mnist-attention")
    first, offered = catalogue(path, None, "shipped")
    assert first == "mnist-attention" and list(offered).count("mnist-attention") == 1


@pytest.mark.parametrize("checkpoint, best, models, message", [
    (None, None, "", "exactly one of --checkpoint"),
    ("a", "b", "", "exactly one of --checkpoint"),
    ("a", None, "grey", "NAME=URI items or shipped"),
    ("a", None, "grey=", "NAME=URI items or shipped"),
    ("a", None, "Grey Model=x", "model name 'Grey Model'"),
    ("a", None, "b=x,b=y", "two models are named 'b'"),
    ("runs/a", None, "a=elsewhere", "two models are named 'a'"),
])
def test_a_bad_catalogue_is_one_line(checkpoint, best, models, message):
    with pytest.raises(ValueError, match=message) as info:
        catalogue(checkpoint, best, models)
    assert "\n" not in str(info.value)

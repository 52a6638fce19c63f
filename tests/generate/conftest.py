from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small NegWorld export (COCO captions/instances, VQAv2, scenes.json ground truth)."""
    from negationclip.data.negworld import WorldConfig, build_world

    root = tmp_path_factory.mktemp("gen") / "world"
    build_world(root, WorldConfig(images=40, seed=3), show_progress=False)
    return root


@pytest.fixture
def train(world):
    return {"captions": world / "captions_train.json",
            "instances": world / "instances_train.json",
            "images": world / "images",
            "questions": world / "vqa_questions_train.json",
            "annotations": world / "vqa_annotations_train.json"}

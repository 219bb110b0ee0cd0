"""Bad input: each gives a clear error naming the file, the field or id, and the expectation."""

import json
import warnings

import pytest
import torch

from datasets.coco import CocoDetection
from datasets.transforms import collate

from .conftest import write_tiny_coco


def rewrite(path, **changes):
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))
    return doc


def test_tiny_dataset_loads(tiny_coco):
    images, ann = tiny_coco
    ds = CocoDetection(images, ann)
    assert ds.cat_ids == [5, 9] and ds.image_ids == [1, 2, 3]
    image, t = ds[0]
    assert image.shape == (3, 30, 40) and torch.allclose(image, torch.full_like(image, 10 / 255))
    assert t["boxes"].tolist() == [[1, 2, 11, 10], [20, 5, 30, 15]] and t["labels"].tolist() == [
        0,
        1,
    ]
    assert ds.target(1)["ignore_boxes"].tolist() == [[0, 0, 30, 20]]  # crowd


def test_missing_annotation_file_and_image_folder(tiny_coco, tmp_path):
    images, ann = tiny_coco
    with pytest.raises(
        FileNotFoundError, match=r"annotation file not found: .*nope\.json.*COCO instances"
    ):
        CocoDetection(images, tmp_path / "nope.json")
    with pytest.raises(
        FileNotFoundError, match=r"image folder not found: .*no_images.*instances\.json"
    ):
        CocoDetection(tmp_path / "no_images", ann)


def test_json_that_is_not_coco(tiny_coco):
    images, ann = tiny_coco
    ann.write_text("{not json")
    with pytest.raises(ValueError, match=r"instances\.json: not valid JSON"):
        CocoDetection(images, ann)
    ann.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(
        ValueError, match=r"instances\.json: not a COCO instances file: .*'categories'"
    ):
        CocoDetection(images, ann)
    ann.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"'images', 'annotations', 'categories'"):
        CocoDetection(images, ann)
    ann.write_text(json.dumps({"images": {}, "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match=r"field 'images' is dict, expected a list"):
        CocoDetection(images, ann)


def test_annotation_for_unknown_image_or_category(tiny_coco):
    images, ann = tiny_coco
    doc = json.loads(ann.read_text())
    bad = dict(doc["annotations"][0], id=7, image_id=42)
    rewrite(ann, annotations=doc["annotations"] + [bad])
    with pytest.raises(
        ValueError, match=r"instances\.json: annotations\[3\] \(id 7\) refers to image_id 42"
    ):
        CocoDetection(images, ann)
    bad = dict(doc["annotations"][0], id=7, category_id=3)
    rewrite(ann, annotations=doc["annotations"] + [bad])
    with pytest.raises(
        ValueError, match=r"refers to category_id 3, which is not in 'categories' \(ids: 5, 9\)"
    ):
        CocoDetection(images, ann)


def test_malformed_entries(tiny_coco):
    images, ann = tiny_coco
    doc = json.loads(ann.read_text())
    rewrite(ann, annotations=[dict(doc["annotations"][0], bbox=[1, 2, 3])])
    with pytest.raises(
        ValueError, match=r"annotations\[0\] \(id 1\) has bbox \[1, 2, 3\], expected 4 finite"
    ):
        CocoDetection(images, ann)
    rewrite(
        ann, annotations=doc["annotations"], images=[{"id": 1, "file_name": "1.png", "width": 40}]
    )
    with pytest.raises(ValueError, match=r"images\[0\] has no field 'height'"):
        CocoDetection(images, ann)


def test_missing_image_file_error_or_skip(tiny_coco):
    images, ann = tiny_coco
    (images / "2.png").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"image file not found: .*2\.png \(image id 2 in .*instances\.json\)",
    ):
        CocoDetection(images, ann)
    with pytest.warns(UserWarning, match=r"skipped 1 images whose files are missing"):
        ds = CocoDetection(images, ann, on_bad_image="skip")
    assert ds.image_ids == [1, 3] and ds.skipped == 1


def test_corrupt_or_wrongly_sized_image_error_or_skip(tiny_coco):
    images, ann = tiny_coco
    (images / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    ds = CocoDetection(images, ann)  # found; decoded only when read
    with pytest.raises(ValueError, match=r"bad image file .*2\.png \(image id 2\)"):
        ds[1]
    doc = json.loads(ann.read_text())
    doc["images"][2]["width"] = 41
    rewrite(ann, images=doc["images"])
    with pytest.raises(
        ValueError,
        match=r"3\.png \(image id 3\): image is 40x30 px, but .*instances\.json gives width x height 41x30",
    ):
        CocoDetection(images, ann)[2]
    skip = CocoDetection(images, ann, on_bad_image="skip")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        batch = [skip[i] for i in range(3)]
    assert batch[1] is None and batch[2] is None and skip.skipped == 2
    assert sum("skipped bad image file" in str(x.message) for x in w) == 2
    images_t, targets = collate(batch)
    assert images_t.shape[0] == 1 and targets[0]["image_id"] == 1


def test_subset_that_selects_nothing(tiny_coco):
    images, ann = tiny_coco
    with pytest.raises(
        ValueError, match=r"instances\.json: the subset selects no images .*drop_empty=True"
    ):
        CocoDetection(images, ann, categories=["dog"], others="drop_images", drop_empty=True)
    with pytest.raises(ValueError, match="selects no images"):
        CocoDetection(images, ann, max_images=0)
    with pytest.raises(ValueError, match="selects no images"):
        CocoDetection(images, ann, image_ids=[])


def test_bad_arguments(tiny_coco, tmp_path):
    images, ann = tiny_coco
    with pytest.raises(
        ValueError, match=r"others is 'keep', expected one of ignore, background, drop_images"
    ):
        CocoDetection(images, ann, others="keep")
    with pytest.raises(ValueError, match=r"on_bad_image is 'retry'"):
        CocoDetection(images, ann, on_bad_image="retry")
    with pytest.raises(ValueError, match=r"image_ids not in 'images': 4"):
        CocoDetection(images, ann, image_ids=[1, 4])
    with pytest.raises(FileNotFoundError, match=r"image_ids file not found: .*ids\.txt"):
        CocoDetection(images, ann, image_ids=str(tmp_path / "ids.txt"))
    (tmp_path / "ids.txt").write_text("1\ntwo\n")
    with pytest.raises(ValueError, match=r"ids\.txt: image id 'two' is not an integer"):
        CocoDetection(images, ann, image_ids=str(tmp_path / "ids.txt"))
    with pytest.raises(ValueError, match=r"image ids repeated: 1"):
        CocoDetection(images, ann, image_ids=[1, 1])
    with pytest.raises(ValueError, match=r"unknown categories \['cow'\]; valid names: cat, dog"):
        CocoDetection(images, ann, categories=["cow"])


def test_small_and_degenerate_boxes_dropped_with_one_warning(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 10, 10]},
        {
            "id": 2,
            "image_id": 1,
            "category_id": 5,
            "bbox": [1, 1, 0, 10],
        },  # zero width (real COCO has some)
        {"id": 4, "image_id": 2, "category_id": 9, "bbox": [1, 1, 0.5, 9]},  # under 1 px
        {"id": 5, "image_id": 3, "category_id": 9, "bbox": [39.5, 1, 8, 8]},  # 0.5 px once clipped
    ]
    images, ann = write_tiny_coco(tmp_path, annotations=anns)
    with pytest.warns(UserWarning, match=r"dropped 3 boxes smaller than min_box_size=1.0 px") as w:
        ds = CocoDetection(images, ann)
    assert sum("min_box_size" in str(x.message) for x in w) == 1
    assert ds.target(0)["boxes"].tolist() == [[1, 1, 11, 11]]
    assert all(len(ds.target(i)["boxes"]) == len(ds.target(i)["ignore_boxes"]) == 0 for i in (1, 2))
    # min_box_size=0 still drops the boxes with no area
    with pytest.warns(UserWarning, match=r"dropped 1 boxes"):
        CocoDetection(images, ann, min_box_size=0.0)


@pytest.mark.parametrize("bbox", [[1, 1, -5, 10], [1, 1, 5, -2]])
def test_a_box_of_negative_width_or_height_is_an_error_naming_its_id(tmp_path, bbox):
    """Issue 35: a box of negative width was dropped with a UserWarning and training went on."""
    anns = [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 10, 10]},
            {"id": 17, "image_id": 2, "category_id": 5, "bbox": bbox}]
    images, ann = write_tiny_coco(tmp_path, annotations=anns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a warning
        with pytest.raises(ValueError, match=r"instances.json: annotations\[1\] \(id 17\) has bbox .*negative width or height"):
            CocoDetection(images, ann)


def test_a_split_without_annotations_is_an_error_unless_meant(tmp_path):
    """Issue 35: a COCO file with `annotations: []` trained and evaluated to AP -1 silently."""
    images, ann = write_tiny_coco(tmp_path, annotations=[])
    with pytest.raises(ValueError, match=r"instances.json: the 3 selected images hold no box of the categories "
                                         r"\['cat', 'dog'\].*dataset.allow_no_annotations=true"):
        CocoDetection(images, ann)
    assert len(CocoDetection(images, ann, allow_no_annotations=True)) == 3  # a background-only set, meant
    # boxes of other categories only: nothing of the selected ones either
    images, ann = write_tiny_coco(tmp_path / "other", annotations=[
        {"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 1, 10, 10]}])
    with pytest.raises(ValueError, match=r"hold no box of the categories \['cat'\]"):
        CocoDetection(images, ann, categories=["cat"])


def test_missing_optional_fields_are_filled_for_cocoeval(tmp_path):
    anns = [{"image_id": 1, "category_id": 5, "bbox": [1, 1, 10, 4]}]
    images, ann = write_tiny_coco(tmp_path, annotations=anns)
    ds = CocoDetection(images, ann)
    (a,) = ds.coco.dataset["annotations"]
    assert a["iscrowd"] == 0 and a["area"] == 40 and a["id"] == 1


def test_formats_torchvision_does_not_decode_go_through_pil(tmp_path, monkeypatch):
    images = [{"id": 1, "file_name": "1.bmp", "width": 40, "height": 30}]
    img_dir, ann = write_tiny_coco(tmp_path, annotations=[], images=images)
    image, _ = CocoDetection(img_dir, ann, allow_no_annotations=True)[0]
    assert torch.allclose(image, torch.full((3, 30, 40), 10 / 255))
    import datasets.coco_json

    monkeypatch.setattr(datasets.coco_json, "decode_image", None)  # a torchvision without decoders
    png_dir, png_ann = write_tiny_coco(tmp_path / "png")
    image, _ = CocoDetection(png_dir, png_ann)[1]
    assert torch.allclose(image, torch.full((3, 30, 40), 20 / 255))


def test_bad_min_box_size_and_max_images(tiny_coco):
    images, ann = tiny_coco
    with pytest.raises(ValueError, match=r"min_box_size is '1', expected a number of pixels >= 0"):
        CocoDetection(images, ann, min_box_size="1")
    with pytest.raises(ValueError, match=r"max_images is -1, expected a non-negative int or None"):
        CocoDetection(images, ann, max_images=-1)

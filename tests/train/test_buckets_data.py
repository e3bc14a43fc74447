import math

from PIL import Image

from colabkit.dataset.images import load_rgb
from colabkit.train import data
from colabkit.train.buckets import fit_to_bucket, make_buckets, nearest_bucket


def test_buckets_are_multiples_of_64_and_near_the_area():
    for res in (128, 512, 1024):
        buckets = make_buckets(res)
        assert (res, res) in buckets
        for w, h in buckets:
            assert w % 64 == 0 and h % 64 == 0
            assert w * h <= res * res
            assert max(w, h) / min(w, h) <= 4
    sdxl = make_buckets(1024)
    assert (832, 1216) in sdxl and (1216, 832) in sdxl and (896, 1152) in sdxl


def test_nearest_bucket_and_cover_crop():
    buckets = make_buckets(1024)
    assert nearest_bucket(1000, 1000, buckets) == (1024, 1024)
    b = nearest_bucket(2000, 3000, buckets)  # portrait 2:3
    assert b[0] < b[1] and abs(math.log(b[0] / b[1]) - math.log(2 / 3)) < 0.05
    fit = fit_to_bucket(2000, 3000, b)
    rw, rh = fit.resized
    assert rw >= b[0] and rh >= b[1] and (rw == b[0] or rh == b[1])  # covers, touching on one side
    assert fit.crop_left == (rw - b[0]) // 2 and fit.crop_top == (rh - b[1]) // 2


def _dataset(folder, n=5):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (128 + 64 * (i % 2), 128), (i * 40, 10, 10)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"houtline, tag{i}, shared")
    return folder


def test_scan_and_epoch_order_are_pure(tmp_path):
    ds = _dataset(tmp_path / "dataset")
    Image.new("RGB", (128, 128)).save(ds / "nocaption.png")
    (ds / "orphan.txt").write_text("x")
    scan = data.scan(ds, 128)
    assert len(scan.items) == 5 and [p.name for p in scan.missing_captions] == ["nocaption.png"]
    assert [p.name for p in scan.orphan_captions] == ["orphan.txt"]
    assert data.activation_tag_of(scan.items) == "houtline"
    a = data.epoch_batches(scan.items, 3, 2, seed=1, epoch=4, flip_aug=True)
    b = data.epoch_batches(scan.items, 3, 2, seed=1, epoch=4, flip_aug=True)
    assert a == b
    assert a != data.epoch_batches(scan.items, 3, 2, seed=1, epoch=5, flip_aug=True)
    # every image appears num_repeats times, and a batch never mixes buckets
    seen = sorted(s.index for batch in a for s in batch)
    assert seen == sorted(list(range(5)) * 3)
    for batch in a:
        assert len({scan.items[s.index].fit.bucket for s in batch}) == 1
    assert len(a) == sum(math.ceil(n * 3 / 2) for n in scan.bucket_sizes)


def test_sub_folders_are_not_trained_as_the_dataset_check_says(tmp_path):
    ds = _dataset(tmp_path / "dataset")
    sub = ds / "old"
    sub.mkdir()
    Image.new("RGB", (128, 128)).save(sub / "x.png")
    (sub / "x.txt").write_text("houtline, x")
    (ds / ".hidden.png").write_bytes(b"")
    scan = data.scan(ds, 128)
    assert sorted(it.path.name for it in scan.items) == [f"img{i}.png" for i in range(5)]
    assert not scan.missing_captions and not scan.orphan_captions and not scan.unreadable


def test_fingerprint_changes_with_caption(tmp_path):
    ds = _dataset(tmp_path / "dataset")
    before = data.scan(ds, 128).fingerprint()
    (ds / "img0.txt").write_text("houtline, other")
    assert data.scan(ds, 128).fingerprint() != before


def test_train_caption_keeps_first_tokens():
    cap = "houtline, a, b, c, d, e"
    outs = {data.train_caption(cap, True, 1, s) for s in range(20)}
    assert all(o.startswith("houtline, ") for o in outs) and len(outs) > 1
    assert data.train_caption(cap, False, 1, 3) == cap
    assert sorted(data.split_tags(next(iter(outs)))) == sorted(data.split_tags(cap))


def test_open_rgb_composites_on_white(tmp_path):
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0, 255))
    im.save(tmp_path / "t.png")
    rgb = load_rgb(tmp_path / "t.png")  # what training encodes: the tagger's own conversion
    assert rgb.mode == "RGB" and rgb.getpixel((5, 5)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (255, 0, 0)

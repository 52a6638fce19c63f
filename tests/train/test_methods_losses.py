"""Each method's loss against a port of its released code, written here, on fixed tensors."""

import random

import torch
import torch.nn.functional as F

from negationclip.train.data import Example
from negationclip.train.methods import get_method
from negationclip.train.methods.base import StepContext
from negationclip.train.methods.conclip import conclip_loss
from negationclip.train.methods.negbench import clip_loss, mcq_loss
from negationclip.train.methods.omni import omni_loss, presence_negation
from negationclip.train.methods.tng import templates, tng_loss, tng_texts


def _feats(n, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


# --- ports of the released code (cited files), independent of the package ------------------

def port_conclip(image_features, text_features, logit_scale):
    """CoN-CLIP src/training_utils/loss_functions.py CustomLossWithNegatives.forward, after
    helpers.clip_forward_pass (features normalised there)."""
    batch_size = image_features.shape[0] // 2
    labels = torch.arange(batch_size, dtype=torch.long)
    text_features_rev = torch.cat([text_features[batch_size:], text_features[:batch_size]], dim=0)
    logits1 = logit_scale * image_features[:batch_size] @ text_features.T
    logits2 = logit_scale * text_features[:batch_size] @ image_features.T
    logits3 = logit_scale * image_features[batch_size:] @ text_features_rev.T
    return (F.cross_entropy(logits1, labels) + F.cross_entropy(logits2, labels)
            + F.cross_entropy(logits3, labels)) / 3


def port_negbench_clip(image_features, text_features, logit_scale):
    """negbench benchmarks/src/open_clip/loss.py ClipLoss.forward, world_size 1 (features
    normalised by the model's forward)."""
    logits_per_image = logit_scale * image_features @ text_features.T
    logits_per_text = logit_scale * text_features @ image_features.T
    labels = torch.arange(logits_per_image.shape[0], dtype=torch.long)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def port_negbench_mcq(image_features, text_features, correct_answers, logit_scale):
    """negbench MCQLoss.forward (features straight from encode_image / encode_text)."""
    logits = torch.einsum('bf,bnf->bn', image_features, text_features) * logit_scale
    return F.cross_entropy(logits, correct_answers)


def port_tng_compute_loss(logits, labels_text):
    """TNG-CLIP TNGCLIP.py compute_loss, with its random labels passed in."""
    batch_size = logits.shape[0] // 3
    labels = torch.arange(batch_size)
    logits_align = logits[:batch_size * 3, :batch_size]
    loss_img = F.cross_entropy(logits_align.T, labels_text)
    loss_txt = F.cross_entropy(logits_align, labels.repeat_interleave(3))
    return (loss_img + loss_txt) / 2


class _Pick:
    """A random.Random stand-in that always picks element ``k``: both sides then draw alike."""

    def __init__(self, k):
        self.k = k

    def choice(self, seq):
        return seq[self.k % len(seq)]


def port_tng_batch(captions, nearest_indices, objects_fn, pick):
    """TNG-CLIP util.py prepair_similar_data + train.py's swap and merge_into_triplets, with
    their random.choice replaced by ``pick`` and the NLTK noun step by ``objects_fn``."""
    t = templates()

    def combine_align(caption, obj, negation):
        caption = caption.split(".")[0]
        negation_caption = pick.choice(negation).format(obj=obj, cap=caption)
        negation_caption = negation_caption.lower()
        return negation_caption.capitalize()

    def combine_contrast(caption, negation):
        caption = caption.split(".")[0]
        negation_caption = pick.choice(negation).format(cap=caption)
        negation_caption = negation_caption.lower()
        return negation_caption.capitalize()

    object_list = [objects_fn(captions[i], captions[nearest_indices[i]]) for i in range(len(captions))]
    align = []
    for i in range(len(captions)):
        align += [combine_align(captions[i], object_list[i], t["align"]),
                  combine_align(captions[i], object_list[i], t["align"])]
    contrast = []
    for i in range(len(captions)):
        contrast += [combine_contrast(captions[i], t["contrast"]),
                     combine_contrast(captions[i], t["contrast"])]
    texts = align + contrast
    for k in range(len(texts) // 4):
        texts[2 * k + 1] = texts[len(texts) - 2 * k - 1]
    texts = texts[:len(texts) // 2]
    merged = []
    for i in range(len(captions)):
        merged.extend(texts[2 * i: 2 * i + 2] + [captions[i]])
    return merged


# --- the tests ----------------------------------------------------------------------------

def test_conclip_loss_equals_the_released_three_term_loss():
    b = 5
    img, dis, cap, neg = _feats(b, seed=1), _feats(b, seed=2), _feats(b, seed=3), _feats(b, seed=4)
    s = torch.tensor(17.5, dtype=torch.float64)
    n = lambda x: F.normalize(x, dim=-1)
    want = port_conclip(torch.cat([n(img), n(dis)]), torch.cat([n(cap), n(neg)]), s)
    got = conclip_loss(img, cap, neg, dis, s)
    assert abs(float(got) - float(want)) < 1e-6


def test_negbench_clip_and_mcq_losses_equal_the_released_ones():
    b, d = 6, 8
    img, txt = _feats(b, seed=5), _feats(b, seed=6)
    opts = torch.stack([_feats(b, seed=7), _feats(b, seed=8), _feats(b, seed=9)], dim=1)
    correct = torch.tensor([0, 2, 1, 0, 1, 2])
    s = torch.tensor(3.0, dtype=torch.float64)
    n = lambda x: F.normalize(x, dim=-1)
    assert abs(float(clip_loss(img, txt, s)) - float(port_negbench_clip(n(img), n(txt), s))) < 1e-6
    assert abs(float(mcq_loss(img, opts, correct, s)) - float(
        port_negbench_mcq(img, opts, correct, s))) < 1e-6   # unnormalised, as released


def _ctx(table: dict, images: dict, scale=torch.tensor(10.0, dtype=torch.float64), step=0):
    return StepContext(encode_text=lambda ts: torch.stack([table[t] for t in ts]),
                       encode_images=lambda ks: torch.stack([images[k] for k in ks]),
                       cached_image=None, logit_scale=scale, raw_logit_scale=scale,
                       device=torch.device("cpu"), step=step)


def _rows_and_tables(b=4):
    rows = [Example(f"im{i}", f"cap {i} with no dog", hard_texts=(f"cap {i} with a dog",),
                    hard_image=f"d{i}") for i in range(b)]
    table = {}
    for i, e in enumerate(rows):
        table[e.text] = _feats(1, seed=100 + i)[0]
        table[e.hard_texts[0]] = _feats(1, seed=200 + i)[0]
    images = {f"im{i}": _feats(1, seed=300 + i)[0] for i in range(b)}
    images.update({f"d{i}": _feats(1, seed=400 + i)[0] for i in range(b)})
    return rows, table, images


def test_conclip_and_negbench_methods_assemble_their_released_losses():
    rows, table, images = _rows_and_tables()
    n = lambda x: F.normalize(x, dim=-1)
    img = torch.stack([images[e.image] for e in rows])
    dis = torch.stack([images[e.hard_image] for e in rows])
    cap = torch.stack([table[e.text] for e in rows])
    neg = torch.stack([table[e.hard_texts[0]] for e in rows])
    s = torch.tensor(10.0, dtype=torch.float64)
    _, v = get_method("conclip").loss(_ctx(table, images), rows)
    assert abs(v - float(port_conclip(torch.cat([n(img), n(dis)]), torch.cat([n(cap), n(neg)]), s))) < 1e-6
    m = get_method("negbench")
    m.setup(rows, None)
    _, v = m.loss(_ctx(table, images), rows)
    want = (0.99 * port_negbench_clip(n(img), n(cap), s)
            + 0.01 * port_negbench_mcq(img, torch.stack([cap, neg], 1), torch.zeros(4, dtype=torch.long), s))
    assert abs(v - float(want)) < 1e-6


def test_tng_texts_follow_the_released_generation_rules():
    caps = ["A dog on a sofa.", "A cat and a lamp near a sofa", "Two cars on a road. Sunny",
            "A dog with a ball"]
    vocab = sorted(["dog", "cat", "lamp", "sofa", "car", "road", "ball"], key=lambda s: (-len(s), s))
    nearest = [3, 0, 1, 0]

    def first_missing(anchor, neighbour):  # util.get_negation_object, one object per caption
        import re
        words = [w for w in re.findall(r"[A-Za-z]+", neighbour)
                 if w.lower().rstrip("s") in vocab or w.lower() in vocab]
        for w in words:
            if w not in anchor:
                return w
        return "butterfly"

    for k in (0, 5, 17):
        got = tng_texts(caps, nearest, vocab, _Pick(k), contrast_from="reversed")
        assert got == port_tng_batch(caps, nearest, first_missing, _Pick(k))
    t = templates()
    assert len(t["align"]) == 46 and len(t["contrast"]) == 18
    # row 0's neighbour (3) names a ball the anchor lacks ("dog" is in both); row 3: fallback-free
    assert got[0] == t["align"][17 % 46].format(obj="ball", cap="A dog on a sofa").lower().capitalize()
    # the paper's reading: the whole-caption negation is of the nearest image's caption
    near = tng_texts(caps, nearest, vocab, _Pick(2), contrast_from="nearest")
    assert near[1] == t["contrast"][2].format(cap="A dog with a ball").lower().capitalize()
    assert near[2::3] == caps


def test_tng_loss_released_and_paper_image_labels():
    b = 4
    txt, img = _feats(3 * b, seed=11), _feats(b, seed=12)
    logits = F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T / 0.07
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(3 * b, generator=torch.Generator().manual_seed(5))[:b]
    assert abs(float(tng_loss(txt, img, "released", g)) - float(port_tng_compute_loss(logits, perm))) < 1e-6
    # paper: each image's own three texts are its positives (mean of the three hard-label CEs)
    labels = torch.arange(b)
    img_side = sum(F.cross_entropy(logits.T, 3 * labels + k) for k in range(3)) / 3
    txt_side = F.cross_entropy(logits, labels.repeat_interleave(3))
    assert abs(float(tng_loss(txt, img, "paper")) - float((img_side + txt_side) / 2)) < 1e-6


def test_omni_loss_terms_and_presence_negation():
    b = 4
    img, neg, aff, dis, orig, pres = (_feats(b, seed=20 + i) for i in range(6))
    has = torch.tensor([True, False, True, True])
    s = torch.tensor(12.0, dtype=torch.float64)
    cos = lambda a, c: F.cosine_similarity(a, c, dim=-1)
    two_way = sum(-torch.log_softmax(torch.stack([s * cos(img[i], neg[i]), s * cos(img[i], aff[i])]), 0)[0]
                  for i in range(b)) / b
    hinge = sum(max(0.0, 0.3 - float(cos(img[i], orig[i]) - cos(img[i], pres[i])))
                for i in range(b) if has[i]) / 3
    n = lambda x: F.normalize(x, dim=-1)
    want = port_conclip(torch.cat([n(img), n(dis)]), torch.cat([n(neg), n(aff)]), s) + 0.5 * two_way + 2.0 * hinge
    got = omni_loss(img, neg, aff, dis, orig, pres, has, s, absence_weight=0.5, presence_weight=2.0,
                    margin=0.3)
    assert abs(float(got) - float(want)) < 1e-6
    rng = random.Random(0)
    assert presence_negation("a red square with no circles", "circle", ["square", "star"],
                             "a red square", rng) == "a red square with no stars"
    assert presence_negation("a red square, nothing else", "circle", ["star"], "a red square",
                             rng) is None

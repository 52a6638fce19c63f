import itertools

from negationclip.data.negworld.phrasing import uses_heldout_cue
from negationclip.generate.backends.base import RewriteTask
from negationclip.generate.backends.rules import COCO_NAMES, RulesRewriter
from negationclip.generate.grammar import (P1_PHRASINGS, article, mentions, p1_rewrite, p2_rewrite,
                                           pluralize, question_to_clause, with_article)
from negationclip.generate.parse import check_affirmed, check_negated


def test_articles_and_plurals():
    assert article("apple") == "an" and article("hat") == "a" and article("umbrella") == "an"
    assert article("unicorn") == "a" and article("hour glass") == "an"
    assert pluralize("knife") == "knives" and pluralize("bus") == "buses"
    assert pluralize("teddy bear") == "teddy bears" and pluralize("person") == "people"
    assert pluralize("skis") == "skis" and pluralize("broccoli") == "broccoli"
    assert with_article("skis") == "skis" and with_article("apple") == "an apple"


def test_p1_phrasings():
    assert p1_rewrite("A woman riding a horse.", "hat", "not_wearing") == (
        "A woman not wearing a hat riding a horse.", "A woman wearing a hat riding a horse.")
    assert p1_rewrite("A child playing with a ball in the park", "tree", "with_no")[0] == \
        "A child playing with a ball in the park with no trees"
    assert p1_rewrite("Two dogs", "apple", "without")[0] == "Two dogs without an apple"
    assert p1_rewrite("Two dogs", "skis", "there_is_no")[0] == \
        "Two dogs, and there are no skis in the picture"
    assert p1_rewrite("A bowl of fruit", "hat", "not_wearing") is None  # nobody to wear it
    # the negation first: "... in this picture of" + the caption, its article lower-cased
    assert p1_rewrite("A square above a red square.", "triangle", "no_first") == (
        "There are no triangles in this picture of a square above a red square.",
        "There is a triangle in this picture of a square above a red square.")
    assert p1_rewrite("London at night", "bus", "no_first")[0] == \
        "There are no buses in this picture of London at night"


def test_mentions():
    assert mentions("A man riding a bike", "person")
    assert mentions("two dogs on a couch", "dog")
    assert mentions("a cellphone on a table", "cell phone")
    assert not mentions("a cat on a mat", "dog")


def test_p2_questions():
    assert question_to_clause("Is the man smiling?")["subject"] == "the man"
    assert question_to_clause("Is there a dog in the picture?") == {
        "kind": "exists", "object": "dog", "aux": "is"}
    assert question_to_clause("What color is the car?") is None
    neg, aff, _ = p2_rewrite("A man riding a bike.", "Is the man smiling?")
    assert neg == "A man who is not smiling riding a bike."
    assert aff == "A man who is smiling riding a bike."
    neg, _, _ = p2_rewrite("A red circle.", "Does the square have a dot?")
    assert neg == "A red circle, and the square does not have a dot."
    assert p2_rewrite("A dog on a couch.", "Is there a dog?") is None  # contradicts the caption


def test_rules_rewriter_never_uses_heldout_phrasings_and_passes_its_checks():
    captions = ["A woman riding a horse.", "two men playing frisbee in a park",
                "A kitchen with a stove", "a red circle above a blue square", "People on a beach"]
    rw = RulesRewriter()
    tasks = [RewriteTask(c, obj=o, affirmed=True, seed=s)
             for (c, o), s in zip(itertools.product(captions, COCO_NAMES), itertools.count())
             if not mentions(c, o)]
    for t in tasks:
        r = rw.rewrite([t])[0]
        assert r.negated and not uses_heldout_cue(r.negated), r.negated
        assert not uses_heldout_cue(r.affirmed), r.affirmed
        assert check_negated(t.caption, r.negated, t.obj) is None, r.negated
        assert check_affirmed(t.caption, r.affirmed, t.obj) is None, r.affirmed
    for c, o, ph in itertools.product(captions, ["hat", "tie", "apple"], P1_PHRASINGS):
        neg, aff = p1_rewrite(c, o, ph)
        assert not uses_heldout_cue(neg) and not uses_heldout_cue(aff)
    phrasings = {rw.rewrite([t])[0].phrasing for t in tasks}
    assert len(phrasings) >= 4  # several phrasings, incl. "not_wearing"
    assert "not_wearing" in phrasings
    for q in ["Is the man smiling?", "Is there a cat?", "Does the square have a dot?",
              "Are the people happy?", "Is it raining?"]:
        neg, aff, _ = p2_rewrite("A man riding a bike.", q)
        assert not uses_heldout_cue(neg) and not uses_heldout_cue(aff)


def test_p2_affirmed_conjugates_do_support():
    assert p2_rewrite("A green star.", "Does the star have a dot?")[1] == \
        "A green star, and the star has a dot."
    assert p2_rewrite("A man.", "Does the man watch tv?")[1] == "A man, and the man watches tv."

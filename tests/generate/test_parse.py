import pytest

from negationclip.generate.parse import (check_affirmed, check_negated, parse_numbered,
                                         parse_objects, parse_rewrite, parse_yes_no)


@pytest.mark.parametrize("text,want", [
    ("No.", "no"), ("no, there isn't", "no"), ("NO", "no"), ("Nope!", "no"),
    ('{"answer": "no"}', "no"), ('```json\n{"present": false}\n```', "no"),
    ("There is no hat in this image.", "no"), ("The answer is: no", "no"),
    ("Yes.", "yes"), ("yes, there is a dog", "yes"), ('{"answer": "yes"}', "yes"),
    ("I can see a hat on the table.", "yes"),
])
def test_yes_no_variants(text, want):
    assert parse_yes_no(text) == want


@pytest.mark.parametrize("text", ["", "   ", None, "asdf qwerty", "I am not sure.", "maybe",
                                  "It is hard to say", "x" * 5000, '{"foo": 1}',
                                  "There is no hat but there is a cap"])
def test_unreadable_or_unsure_is_none_never_absent(text):
    assert parse_yes_no(text) is None


def test_objects():
    assert parse_objects("Hat.") == ["hat"]
    assert parse_objects("a hat") == ["hat"]
    assert parse_objects("Object: umbrella") == ["umbrella"]
    assert parse_objects('["fork", "knife"]', 2) == ["fork", "knife"]
    assert parse_objects("1. fork\n2. knife", 2) == ["fork", "knife"]
    assert parse_objects("fork, knife, spoon", 2) == ["fork", "knife"]
    assert parse_objects("I cannot answer that because the caption is long") == []
    assert parse_objects("") == []


def test_numbered_group_answer():
    assert parse_numbered("1. tree\n2. hat\n3. cup", 3) == [["tree"], ["hat"], ["cup"]]
    assert parse_numbered('{"1": "tree", "3": "cup"}', 3) == [["tree"], [], ["cup"]]
    assert parse_numbered("tree hat cup", 3) is None


def test_rewrite_forms():
    assert parse_rewrite('Here is the rewritten caption: "A man with no hat."') == (
        "A man with no hat.", None)
    assert parse_rewrite('{"negated": "a man without a hat", "affirmed": "a man with a hat"}') == (
        "a man without a hat", "a man with a hat")
    assert parse_rewrite("Negated: a man without a hat\nAffirmed: a man with a hat") == (
        "a man without a hat", "a man with a hat")
    assert parse_rewrite("") == (None, None)


def test_rewrite_checks():
    orig = "A woman riding a horse on a beach"
    assert check_negated(orig, "A woman not wearing a hat riding a horse on a beach", "hat") is None
    assert check_negated(orig, "A hat.", "hat") is not None  # drops the content
    assert check_negated(orig, "A woman riding a horse on a beach with a hat", "hat") == "does not negate"
    assert check_negated(orig, orig, "hat") is not None
    assert check_negated(orig, "A woman riding a horse on a beach with no dogs", "hat") == \
        "does not mention the object"
    assert check_negated(orig, orig + " without a hat " + "and more " * 40, "hat") == "too long"
    assert check_affirmed(orig, "A woman wearing a hat riding a horse on a beach", "hat") is None
    assert check_affirmed(orig, "A woman riding a horse on a beach without a hat", "hat") == "negates"


def test_p2_rewrite_must_carry_the_question():
    orig = "A man riding a bike down the street"
    q = "Is the man wearing a helmet?"
    assert check_negated(orig, "A man not wearing a helmet riding a bike down the street",
                         question=q) is None
    assert check_negated(orig, "A man riding a bike down the street with no cars",
                         question=q) == "drops the question's content"

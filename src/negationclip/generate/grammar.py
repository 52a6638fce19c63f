"""Small English helpers shared by the rules backends and the rewrite checks: articles,
plurals, "is this object already mentioned?", negation cues, and the P1/P2 templates.

No held-out phrasing lives here: the templates use only "with no", "without", "not
wearing", "there is no", "does not" / "is not" (tests check this against NegWorld's list).
"""

from __future__ import annotations

import re

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# Words that express negation; a rewrite must contain at least one more of them than the
# original caption.
NEGATION_CUES = ("no", "not", "without", "n't", "none", "nobody", "nothing", "never",
                 "neither", "nor", "cannot")

_IRREGULAR = {
    "person": "people", "man": "men", "woman": "women", "child": "children", "foot": "feet",
    "tooth": "teeth", "mouse": "mice", "goose": "geese", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves", "shelf": "shelves", "loaf": "loaves", "half": "halves", "life": "lives",
    "wife": "wives", "scarf": "scarves", "sheep": "sheep", "deer": "deer", "fish": "fish",
    "bus": "buses", "cactus": "cacti", "potato": "potatoes", "tomato": "tomatoes",
    "hero": "heroes", "zebra": "zebras", "giraffe": "giraffes", "tie": "ties",
}
_PLURAL_ONLY = {"scissors", "skis", "glasses", "jeans", "pants", "shorts", "sunglasses",
                "trousers", "people", "clothes", "headphones", "goggles", "binoculars",
                "earphones", "gloves", "shoes", "boots", "sneakers", "skates"}
_MASS = {"broccoli", "hair", "grass", "water", "snow", "sand", "food", "furniture", "rice",
         "bread", "cheese", "meat", "pizza", "cake", "luggage", "traffic", "fruit"}
_VOWEL_SOUND_EXCEPTIONS_A = ("uni", "use", "usu", "uti", "euro", "eu", "one", "once", "ur")
_VOWEL_SOUND_EXCEPTIONS_AN = ("hour", "honest", "honor", "heir")

# Things a person wears: "not wearing a hat" instead of "with no hat".
WEARABLES = {"hat", "cap", "helmet", "tie", "scarf", "glasses", "sunglasses", "jacket", "coat",
             "backpack", "shoes", "boots", "gloves", "mask", "watch", "necklace", "shirt",
             "sweater", "hoodie", "uniform", "wetsuit", "goggles", "apron", "bracelet",
             "earrings", "vest", "jeans", "shorts", "dress", "skirt", "handbag", "headband",
             "beanie", "visor", "belt", "suit", "costume", "bandana", "wristband"}

# Nouns naming people (subjects of "not wearing ..."; "person" also covers them when
# checking whether a category is mentioned).
PERSON_WORDS = {"man", "men", "woman", "women", "person", "people", "boy", "boys", "girl",
                "girls", "child", "children", "kid", "kids", "guy", "guys", "lady", "ladies",
                "player", "players", "skier", "skiers", "surfer", "surfers", "skateboarder",
                "skateboarders", "snowboarder", "snowboarders", "rider", "riders", "baby",
                "toddler", "gentleman", "adult", "adults", "teenager", "teenagers", "chef",
                "cook", "batter", "catcher", "pitcher", "officer", "worker", "workers",
                "crowd", "couple", "family", "biker", "bikers", "tourist", "tourists",
                "student", "students", "athlete", "athletes", "someone", "he", "she"}

# Other words that mention a (COCO) category without naming it.
SYNONYMS: dict[str, set[str]] = {
    "person": PERSON_WORDS,
    "motorcycle": {"motorbike", "motorcycles", "motorbikes", "scooter", "moped"},
    "bicycle": {"bike", "bikes", "bicycles", "cycle"},
    "airplane": {"plane", "planes", "jet", "jets", "aircraft", "airliner", "aeroplane"},
    "car": {"cars", "vehicle", "vehicles", "taxi", "suv", "sedan"},
    "cell phone": {"phone", "phones", "cellphone", "cellphones", "smartphone", "mobile"},
    "tv": {"television", "tvs", "monitor", "screen"},
    "laptop": {"laptops", "computer", "notebook"},
    "couch": {"sofa", "sofas", "couches"},
    "dining table": {"table", "tables"},
    "hot dog": {"hotdog", "hotdogs"},
    "donut": {"doughnut", "doughnuts", "donuts"},
    "sports ball": {"ball", "balls", "football", "soccer", "baseball", "basketball", "tennis"},
    "potted plant": {"plant", "plants", "houseplant", "flowerpot"},
    "cup": {"mug", "mugs", "cups"},
    "boat": {"ship", "ships", "boats", "sailboat", "yacht", "canoe", "kayak"},
    "handbag": {"purse", "bag", "handbags"},
    "bench": {"benches", "seat"},
    "truck": {"trucks", "lorry"},
    "dog": {"puppy", "puppies", "dogs"},
    "cat": {"kitten", "kittens", "cats", "kitty"},
    "teddy bear": {"teddy", "stuffed bear", "plush"},
    "wine glass": {"wineglass", "glass of wine"},
    "refrigerator": {"fridge", "fridges", "refrigerators"},
    "remote": {"remotes", "controller"},
}


def words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower().replace("\u2019", "'"))


def article(noun: str) -> str:
    """'a' or 'an' by sound, for the first word of ``noun``."""
    w = noun.strip().lower()
    if not w:
        return "a"
    if w.startswith(_VOWEL_SOUND_EXCEPTIONS_AN):
        return "an"
    if w.startswith(_VOWEL_SOUND_EXCEPTIONS_A):
        return "a"
    return "an" if w[0] in "aeiou" else "a"


def is_plural(noun: str) -> bool:
    last = noun.strip().lower().split()[-1] if noun.strip() else ""
    return last in _PLURAL_ONLY or last in _IRREGULAR.values() and last not in _IRREGULAR


def is_mass(noun: str) -> bool:
    last = noun.strip().lower().split()[-1] if noun.strip() else ""
    return last in _MASS


def pluralize(noun: str) -> str:
    """Plural of a (multi-word) noun: the last word takes the plural."""
    parts = noun.strip().split()
    if not parts:
        return noun
    last = parts[-1]
    low = last.lower()
    if low in _PLURAL_ONLY or low in _MASS or is_plural(low):
        plural = last
    elif low in _IRREGULAR:
        plural = _IRREGULAR[low]
    elif re.search(r"(s|x|z|ch|sh)$", low):
        plural = last + "es"
    elif re.search(r"[^aeiou]y$", low):
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return " ".join(parts[:-1] + [plural])


def with_article(noun: str) -> str:
    """'a hat', 'an apple', 'skis', 'broccoli' (no article for plurals and mass nouns)."""
    if is_plural(noun) or is_mass(noun):
        return noun
    return f"{article(noun)} {noun}"


def name_forms(name: str) -> set[str]:
    """Word sequences that count as mentioning category ``name`` (singular, plural, synonyms)."""
    name = name.strip().lower()
    forms = {name, pluralize(name)}
    forms |= SYNONYMS.get(name, set())
    if " " in name:  # "teddy bear" is also mentioned by "bear"? no: keep the head with care
        head = name.split()[-1]
        forms |= {head, pluralize(head)} if head not in {"table", "glass", "light", "plant", "ball"} else set()
    return {f for f in forms if f}


def mentions(caption: str, name: str) -> bool:
    """Whether ``caption`` already mentions the object ``name`` (or a plural/synonym)."""
    text = " " + " ".join(words(caption)) + " "
    for form in name_forms(name):
        if f" {' '.join(words(form))} " in text:
            return True
    return False


def negation_count(text: str) -> int:
    ws = words(text)
    n = sum(1 for w in ws if w in NEGATION_CUES or w.endswith("n't"))
    return n


def strip_caption(caption: str) -> tuple[str, str]:
    """(caption without trailing punctuation / spaces, the trailing punctuation)."""
    c = " ".join(caption.strip().split())
    m = re.search(r"[.!?]+$", c)
    if m:
        return c[: m.start()].rstrip(), m.group(0)
    return c, ""


def _first_person_noun(caption: str) -> tuple[int, str] | None:
    """(end character offset, word) of the first person noun in ``caption``."""
    for m in re.finditer(r"[A-Za-z]+", caption):
        w = m.group(0).lower()
        if w in PERSON_WORDS and w not in {"he", "she", "someone", "crowd", "couple", "family"}:
            return m.end(), w
    return None


_PLURAL_PEOPLE = {w for w in PERSON_WORDS if w.endswith("s") or w in {"men", "women", "people",
                                                                     "children"}}

# P1 phrasings, in the order they are tried; each is (name, negated template, affirmed
# template). {c}: caption without final punctuation; {a_obj}: object with article;
# {objs}: plural; {be}: is/are.
P1_PHRASINGS = ("with_no", "without", "there_is_no", "and_no", "no_first")
# words that may start a caption and read lower-case after "... in this picture of"
_LOWER_FIRST = {"a", "an", "the", "this", "some", "two", "three", "four", "five", "six",
                "several", "many", "one"}


def p1_rewrite(caption: str, obj: str, phrasing: str) -> tuple[str, str] | None:
    """(negated, affirmed) caption for absent object ``obj`` with the given phrasing.

    ``phrasing`` is one of P1_PHRASINGS or "not_wearing" (only for wearables on a caption
    with a person noun; returns None when it does not apply).
    """
    c, end = strip_caption(caption)
    if not c:
        return None
    obj = " ".join(obj.lower().split())
    a_obj = with_article(obj)
    objs = pluralize(obj)
    plural = is_plural(obj) or is_mass(obj)
    if phrasing == "not_wearing":
        hit = _first_person_noun(c)
        if obj not in WEARABLES or hit is None:
            return None
        pos, w = hit
        thing = objs if w in _PLURAL_PEOPLE and not is_mass(obj) else a_obj
        neg = f"{c[:pos]} not wearing {thing}{c[pos:]}"
        aff = f"{c[:pos]} wearing {thing}{c[pos:]}"
    elif phrasing == "with_no":
        neg, aff = f"{c} with no {objs}", f"{c} with {a_obj}"
    elif phrasing == "without":
        neg, aff = f"{c} without {a_obj}", f"{c} with {a_obj}"
    elif phrasing == "there_is_no":
        be = "are" if plural and not is_mass(obj) else "is"
        neg = f"{c}, and there {be} no {obj} in the picture"
        aff = f"{c}, and there {be} {a_obj} in the picture"
    elif phrasing == "and_no":
        neg, aff = f"{c}, and no {objs} around", f"{c}, and {a_obj} nearby"
    elif phrasing == "no_first":  # the negation before the caption, not after it
        first = c.split(" ", 1)[0]
        tail = first.lower() + c[len(first):] if first.lower() in _LOWER_FIRST else c
        be = "is" if is_mass(obj) else "are"
        neg = f"There {be} no {objs} in this picture of {tail}"
        aff = f"There {'are' if plural and not is_mass(obj) else 'is'} {a_obj} in this picture of {tail}"
    else:
        raise ValueError(f"unknown phrasing {phrasing!r}")
    return neg + end, aff + end


# --- P2: a yes/no question answered "no" -> a negated statement ------------------------------

_AUX = {"is": "is", "are": "are", "was": "was", "were": "were", "does": "does", "do": "do",
        "did": "did", "can": "can", "could": "could", "has": "has", "have": "have",
        "will": "will", "would": "would", "should": "should"}
_DETS = {"the", "this", "that", "these", "those", "his", "her", "their", "its", "a", "an",
         "any", "some", "all"}
_PREPS = {"on", "in", "at", "of", "with", "by", "near", "under", "over", "behind", "for",
          "to", "from", "inside", "outside", "above", "below", "next", "into", "onto",
          "wearing", "holding", "made", "filled", "covered"}
_PRONOUNS = {"it", "he", "she", "they", "you", "this", "that", "these", "those", "we"}
_VERBS = {"have", "has", "look", "wear", "contain", "appear", "seem", "show", "need", "like",
          "match", "belong", "use", "hold", "play", "eat", "go", "work", "fly", "ride", "sit",
          "stand", "smile"}
_COMPOUND = {"traffic", "fire", "stop", "tennis", "baseball", "teddy", "cell", "hot", "street",
             "parking", "ice", "cutting", "dining", "wine", "living", "bath", "train", "bus",
             "computer", "coffee", "soccer", "motor", "water", "ski", "snow", "surf"}
_COLORS = {"red", "green", "blue", "yellow", "white", "black", "brown", "orange", "purple",
           "pink", "gray", "grey", "silver", "gold", "large", "small", "big", "little"}


def question_to_clause(question: str) -> dict | None:
    """Split a yes/no question into subject / aux / rest, or an existence question's object.

    "Is the man smiling?" -> {"kind": "state", "subject": "the man", "aux": "is",
    "rest": "smiling"}; "Is there a dog in the picture?" -> {"kind": "exists", "object":
    "dog", "aux": "is"}. None when the question is not a plain yes/no question.
    """
    q = " ".join(question.strip().rstrip("?").split())
    ws = q.split()
    if len(ws) < 2 or ws[0].lower() not in _AUX:
        return None
    aux = _AUX[ws[0].lower()]
    rest = [w for w in ws[1:]]
    low = [w.lower() for w in rest]
    if low[0] == "there" and aux in {"is", "are", "was", "were"}:
        tail = rest[1:]
        tl = [w.lower() for w in tail]
        if tl and tl[0] in {"a", "an", "any", "some"}:
            tail, tl = tail[1:], tl[1:]
        obj = []
        for w, lw in zip(tail, tl):
            if lw in _PREPS or lw in {"that", "which", "who"}:
                break
            obj.append(w)
        if not obj or len(obj) > 4:
            return None
        return {"kind": "exists", "object": " ".join(obj).lower(), "aux": aux}
    if low[0] in _PRONOUNS:
        n = 1
    elif low[0] in _DETS:
        n = 2  # determiner + one word; a modifier or a known compound takes one more
        while (n < len(low) - 1 and n < 4
               and (low[n - 1].endswith("'s") or low[n - 1] in _COLORS or low[n - 1] in _COMPOUND)
               and low[n] not in _PREPS and low[n] not in _DETS and low[n] not in _VERBS):
            n += 1
    else:
        return None
    subject, predicate = rest[:n], rest[n:]
    if not predicate:
        return None
    subj = " ".join(subject)
    return {"kind": "state", "subject": subj[0].lower() + subj[1:] if subj else subj,
            "aux": aux, "rest": " ".join(predicate)}


def _clause(parsed: dict, negate: bool) -> str:
    aux, rest, subj = parsed["aux"], parsed["rest"], parsed["subject"]
    if aux in {"does", "do", "did"}:
        return f"{subj} {aux} not {rest}" if negate else f"{subj} {_simple_past_or_present(aux, rest)}"
    if aux == "can":
        return f"{subj} cannot {rest}" if negate else f"{subj} can {rest}"
    return f"{subj} {aux} not {rest}" if negate else f"{subj} {aux} {rest}"


def _simple_past_or_present(aux: str, rest: str) -> str:
    """'does' + 'have a dot' -> 'has a dot'; 'do' + 'play' -> 'play'; else keep the auxiliary
    ('did play' is emphatic but correct)."""
    verb, _, tail = rest.partition(" ")
    v = verb.lower()
    if aux == "do":
        return rest
    if aux == "does" and v.isalpha():
        if v == "have":
            third = "has"
        elif v in {"do", "go"} or v.endswith(("s", "x", "z", "ch", "sh")):
            third = verb + "es"
        elif len(v) > 1 and v.endswith("y") and v[-2] not in "aeiou":
            third = verb[:-1] + "ies"
        else:
            third = verb + "s"
        return f"{third} {tail}".strip()
    return f"{aux} {rest}"


def p2_rewrite(caption: str, question: str) -> tuple[str, str, str] | None:
    """(negated, affirmed, phrasing) from a caption and a question answered "no"."""
    parsed = question_to_clause(question)
    if parsed is None:
        return None
    c, end = strip_caption(caption)
    if not c:
        return None
    if parsed["kind"] == "exists":
        obj = parsed["object"]
        if mentions(c, obj):  # the caption says it is there: the pair contradicts itself
            return None
        if parsed["aux"] in {"are", "were"}:  # "are there any cars" -> already plural
            return f"{c} with no {obj}{end}", f"{c} with {obj}{end}", "p2_with_no"
        return (f"{c} with no {pluralize(obj)}{end}", f"{c} with {with_article(obj)}{end}",
                "p2_with_no")
    subj = parsed["subject"]
    head = words(subj)[-1] if words(subj) else ""
    cw = words(c)
    if head and head in cw and subj.split()[0].lower() in _DETS and parsed["aux"] in {"is", "are"}:
        # "a man riding a bike" + "is the man smiling" -> "a man who is not smiling riding a bike"
        m = re.search(rf"\b{re.escape(head)}\b", c, flags=re.IGNORECASE)
        rel = "who" if head in PERSON_WORDS else "that"
        pos = m.end()
        neg = f"{c[:pos]} {rel} {parsed['aux']} not {parsed['rest']}{c[pos:]}"
        aff = f"{c[:pos]} {rel} {parsed['aux']} {parsed['rest']}{c[pos:]}"
        return neg + end, aff + end, "p2_relative"
    return (f"{c}, and {_clause(parsed, True)}{end}", f"{c}, and {_clause(parsed, False)}{end}",
            "p2_clause")

import torch

from negationclip.models.tokenizer import ClipTokenizer, default_bpe_path, write_vocab_files
from tests.conftest import load_reference

HARD = [
    "a photo of a cat",
    "Tom &amp; Jerry &amp;amp; &lt;b&gt;",
    "ﬁne ﬂowers in ｆｕｌｌ ｗｉｄｔｈ letters",
    "emoji 🐶🚗 café naïve Ωmega",
    "  lots   of\n\twhitespace ",
    "it's they're I'll we've",
    "NO cars!!! 123,456.78",
    "mojibake: cafÃ© â€œquotedâ€\x9d",
    "A STREET WITH NO CARS",
]


def _reference():
    st = load_reference("openai_simple_tokenizer")
    return st.SimpleTokenizer(bpe_path=str(default_bpe_path()))


def _openai_tokenize(ref, texts, context_length=77):
    """clip.tokenize(texts, truncate=True), written out from OpenAI's clip.py."""
    sot, eot = ref.encoder["<|startoftext|>"], ref.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, t in enumerate(texts):
        toks = [sot] + ref.encode(t) + [eot]
        if len(toks) > context_length:
            toks = toks[:context_length]
            toks[-1] = eot
        out[i, : len(toks)] = torch.tensor(toks)
    return out


def test_ids_equal_openai_on_hard_inputs():
    tok, ref = ClipTokenizer(), _reference()
    for text in HARD:
        assert tok.encode(text) == ref.encode(text), text


def test_long_caption_truncated_with_eot_kept():
    tok, ref = ClipTokenizer(), _reference()
    long = " ".join(f"word{i} and" for i in range(200))
    texts = HARD + [long]
    ours = tok.tokenize_openai(texts)
    assert torch.equal(ours, _openai_tokenize(ref, texts))
    assert ours.shape == (len(texts), 77)
    assert ours[-1, -1].item() == tok.eot_token_id


def test_dynamic_padding_pads_to_longest_with_mask():
    tok = ClipTokenizer()
    batch = tok(["a cat", "a street with no cars at all"])
    lengths = batch.attention_mask.sum(1).tolist()
    assert batch.input_ids.shape[1] == max(lengths) < 77
    assert lengths[0] == 4  # SOT a cat EOT
    assert batch.input_ids[0, lengths[0] - 1].item() == tok.eot_token_id
    full = tok(["a cat"], padding="max_length")
    assert full.input_ids.shape == (1, 77)


def test_vocab_files_and_save_roundtrip(tmp_path):
    vocab, merges = write_vocab_files(tmp_path / "v")
    assert len(__import__("json").loads(vocab.read_text())) == 49408 and merges.read_text().startswith("#version")
    tok = ClipTokenizer()
    tok.save_pretrained(tmp_path / "tok")
    again = ClipTokenizer.from_pretrained(tmp_path / "tok")
    assert again.encode("a dog without a leash") == tok.encode("a dog without a leash")
    assert again.context_length == 77


def test_ascii_fast_path_of_basic_clean_equals_ftfy():
    """basic_clean skips ftfy for printable ASCII without '&': the reference is OpenAI's
    basic_clean itself (ftfy, double HTML unescape, strip), on strings each branch must see."""
    import html

    import ftfy

    from negationclip.models.tokenizer import basic_clean, ClipTokenizer

    def ref(t):
        return html.unescape(html.unescape(ftfy.fix_text(t))).strip()

    texts = ["  A dog with no leash. ", "a cat &amp; a dog", "fish &lt;3", "tab\tand\nline\r\n",
             "caf\u00c3\u00a9 mojibake", "\u201ccurly\u201d quotes", "\uff21 fullwidth", "\x00nul",
             "ctrl\x1bchar", "plain ascii, punctuation!? (ok) [x] {y} ~ ` ^", "", "   ",
             "\u00a0nbsp", "ligature \ufb01sh"]
    for t in texts:
        assert basic_clean(t) == ref(t), repr(t)
    tok = ClipTokenizer()
    assert tok.encode_many(texts) == [tok.encode(t) for t in texts]

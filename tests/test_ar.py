"""The text family: tokenizers, the corpus cache and stream, sampling, the CLI, the transformers
export, evaluation, and parity of the llama2.c converter with the published greedy sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genforge
from genforge.cli import app
from genforge.config import ConfigError
from genforge.data.errors import DataError
from genforge.modalities.text.data import TextDataConfig, load_text, split_text
from genforge.modalities.text.tokenizer import bpe_tokenizer, char_tokenizer, encode_corpus

from conftest import REPO, SHARED_DATA, tiny
from skips import skip_unless

WEIGHTS = SHARED_DATA.parent / "weights" / "tinystories260K"
SHAKESPEARE = REPO / "data" / "text" / "tinyshakespeare.txt"  # bundled
TANG = SHARED_DATA / "text" / "chinese" / "quantangshi.txt"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    """Shared data as the data root, a private token cache, one thread (a busy shared CPU)."""
    monkeypatch.setenv("GENFORGE_DATA", str(SHARED_DATA))
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


MIXED = "ROMEO: O, wilt thou leave me so unsatisfied?\n\n  白日依山盡，黃河入海流。 café ✓\n"


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizers_round_trip_ascii_and_cjk(kind):
    corpus = MIXED * 3 + "欲窮千里目，更上一層樓。\t" + "".join(chr(c) for c in range(32, 127))
    tok = char_tokenizer(corpus) if kind == "char" else bpe_tokenizer([corpus], 300)
    for text in (MIXED, "欲窮千里目，更上一層樓。", "  spaces\tand\nlines  "):
        ids = tok.encode(text).ids
        assert tok.decode(ids) == text
        assert encode_corpus(tok, text).tolist() == ids  # the cache's fast path agrees
    if kind == "char":
        assert len(tok.encode("白日").ids) == 2  # one token per CJK character
        assert tok.decode(tok.encode("白€日").ids) == "白日"  # € unknown: <unk>, skipped


def test_bpe_corpus_encoding_in_chunks_equals_one_pass():
    text = SHAKESPEARE.read_text()[:20000]
    tok = bpe_tokenizer([text], 400)
    assert encode_corpus(tok, text, chunk_chars=500).tolist() == tok.encode(text).ids


def test_corpus_split_cache_and_stream():
    cfg = TextDataConfig(limit=400, block_size=32)
    data = load_text(cfg)
    split = data.info()["split"]
    assert split["train_tokens"] + split["val_tokens"] == split["train_chars"] + \
        split["val_chars"]  # char level: one token per character
    assert isinstance(data.train, np.memmap)
    assert load_text(cfg).record["cache"] == data.record["cache"]  # read back, same key
    assert load_text(TextDataConfig(limit=401, block_size=32)).record["cache"] != \
        data.record["cache"]
    train, val, record = split_text("a\nbb\nccc\ndddd\n", 0.3)
    assert train + val == "a\nbb\nccc\ndddd\n" and val == "dddd\n"
    assert record["val_chars"] == 5 and "line start" in record["rule"]

    # the stream: seeded per step, resumable from one integer, sharded over processes
    whole = data.stream(batch_size=8, seed=1).next(2)
    assert [b.x.shape for b in whole] == [(4, 33), (4, 33)]
    x = torch.cat([b.x for b in whole])  # (8, 33): windows at starts drawn with seed 1, step 0
    g = torch.Generator().manual_seed(1 * 1_000_003 + 0)
    starts = torch.randint(0, len(data.train) - 32, (8,), generator=g).tolist()
    assert x.tolist() == [data.train[s : s + 33].tolist() for s in starts]
    parts = [data.stream(batch_size=8, seed=1, rank=r, world=2).next(1)[0].x for r in range(2)]
    assert torch.equal(torch.stack(parts, 1).flatten(0, 1), x)
    later = data.stream(batch_size=8, seed=1)
    later.next(1)
    resumed = data.stream(batch_size=8, seed=1)
    resumed.load_state_dict(later.state_dict())
    assert torch.equal(later.next(1)[0].x, resumed.next(1)[0].x)


def test_missing_corpus_names_the_file_and_the_roots(monkeypatch, tmp_path):
    monkeypatch.setenv("GENFORGE_DATA", str(tmp_path))
    with pytest.raises(DataError, match=f"put the UTF-8 text at one of: {tmp_path}/text/x.txt"):
        load_text(TextDataConfig(path="text/x.txt"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny char model trained for a few steps by the CLI (data.root: the shared data)."""
    out = tmp_path_factory.mktemp("ar") / "run"
    result = runner.invoke(app, ["train", "shakespeare-char", *tiny("ar"), "data.limit=2000",
                                 f"data.root={REPO / 'data'}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_sampling_is_seeded_and_options_work(run, capsys):
    model = genforge.load(run)
    a = model.sample(3, seed=0, prompt="ROMEO:", max_new_tokens=20)
    assert len(a) == 3 and all(t.startswith("ROMEO:") for t in a)
    assert a == model.sample(3, seed=0, prompt="ROMEO:", max_new_tokens=20)
    assert a != model.sample(3, seed=1, prompt="ROMEO:", max_new_tokens=20)
    greedy = model.sample(2, seed=0, prompt="ROMEO:", temperature=0, max_new_tokens=40)
    assert greedy[0] == greedy[1] == model.sample(1, seed=5, prompt="ROMEO:", top_k=1,
                                                  max_new_tokens=40)[0]
    assert len(greedy[0]) == len("ROMEO:") + 40  # past the 16-token context: positions crop
    lm, tok = model.objective.nets["lm"], model.objective.tokenizer
    ids = tok.encode("ROMEO:")
    with torch.no_grad():  # the KV cache, then cropped windows, equal plain argmax decoding
        for _ in range(40):
            ids.append(int(lm(input_ids=torch.tensor([ids[-16:]])).logits[0, -1].argmax()))
    assert tok.decode(ids) == greedy[0]
    cut = model.sample(4, seed=0, prompt="A", stop=["e"], max_new_tokens=30)
    assert all("e" not in t for t in cut)
    pieces = list(model.stream_text(seed=0, prompt="ROMEO:", max_new_tokens=20))
    assert len(pieces) > 1  # piece by piece, not one block at the end
    assert "".join(pieces) == model.sample(1, seed=0, prompt="ROMEO:", max_new_tokens=20)[0]
    assert capsys.readouterr().out == ""  # nothing below the CLI prints
    with pytest.raises(ConfigError, match="'€' not in this model's vocabulary"):
        model.sample(1, seed=0, prompt="€")
    with pytest.raises(ConfigError, match="--top-p=1.5"):
        model.sample(1, seed=0, top_p=1.5)


@pytest.mark.parametrize("penalty,attention", [(1.0, "sdpa"), (1.3, "sdpa"), (1.0, "eager")])
def test_texts_joining_a_running_session_get_their_greedy_lone_texts(run, penalty, attention):
    """Continuous batching of text: b (another prompt) joins a's decoding after 3 tokens,
    c after a has ended; greedy texts equal the lone ones (the logits differ only in float
    rounding; the repetition penalty sees each row's own tokens, padding aside). The session
    makes the padding mask itself, in each attention kernel's own form."""
    model = genforge.load(run)
    model.objective.nets["lm"].set_attn_implementation(attention)
    options = {"temperature": 0, "max_new_tokens": 8, "repetition_penalty": penalty}
    session, got = model.session(options), {}

    def steps(k: int) -> None:
        for _ in range(k):
            got.update(session.step())

    session.add(1, {"n": 2, "prompt": "ROMEO:"})
    steps(3)
    session.add(2, {"n": 1, "prompt": "A"})
    steps(5)
    assert set(got) == {1} and session.rows == 1
    session.add(3, {"n": 1, "prompt": "KING:"})
    steps(8)
    assert not session.rows
    for ticket, (n, prompt) in {1: (2, "ROMEO:"), 2: (1, "A"), 3: (1, "KING:")}.items():
        assert got[ticket] == model.sample(n, seed=0, prompt=prompt, **options), ticket


def _big_weights_lm(vocab: int, arch: str):
    """Two layers and large weights: a wrongly visible or missing cache column changes the
    logits by far more than float rounding (~1e-7)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32,
                                          n_layer=2, n_head=2, initializer_range=0.5,
                                          **special)).eval()
    return LlamaForCausalLM(LlamaConfig(  # RoPE: positions live in the cached keys
        vocab_size=vocab, max_position_embeddings=64, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, initializer_range=0.5, **special)).eval()


def _lone_scores(lm, tokenizer, prompts):
    """Greedy options that record every step's scores, the list they go to, and each
    prompt's scores decoded alone (6 steps)."""
    from genforge.families.ar.generate import SamplingOptions, sample_texts

    seen: list[torch.Tensor] = []

    def record(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen.append(scores.clone())
        return scores

    options = SamplingOptions(max_new_tokens=6, temperature=0, logits_processors=[record])
    alone = {}
    for prompt in prompts:
        sample_texts(lm, tokenizer, 1, seed=0, prompt=prompt, options=options)
        alone[prompt], seen[:] = [scores[0] for scores in seen], []
    return options, seen, alone


@pytest.mark.parametrize("arch,attention", [("gpt2", "sdpa"), ("gpt2", "eager"),
                                            ("llama", "sdpa")])
def test_joined_rows_logits_are_their_lone_logits(run, arch, attention):
    """Two prompts of different lengths join a running session in one step: the step runs
    the running row's next token and both prompts in one call (left-padded, causal among
    the new columns, the shorter prompt's padding seeing only itself); a third joins a step
    later, and the cache is compacted when the first row leaves. Each joined row's logits,
    at every step, are those of its text decoded alone, up to float rounding: attending to
    padding or to later prompt tokens, or a mask that lost its columns, would move them."""
    from genforge.families.ar.session import TextSession

    tokenizer = genforge.load(run).objective.tokenizer
    lm = _big_weights_lm(len(tokenizer), arch)
    lm.set_attn_implementation(attention)
    options, seen, alone = _lone_scores(lm, tokenizer, ("KING:", "A", "ROMEO:"))
    session = TextSession(lm, tokenizer, options, seed=0)
    joined: dict[int, list[torch.Tensor]] = {2: [], 3: [], 4: []}

    def advance() -> None:
        order = [r.ticket for r in session._running]  # the rows of the scores, in order
        order += [r.ticket for rows in session._waiting for r in rows]
        session.advance()
        for row, ticket in enumerate(order):
            if ticket in joined:
                joined[ticket].append(seen[-1][row])

    session.add(1, 1, "ROMEO:")
    for _ in range(3):
        advance()
    session.add(2, 1, "KING:")  # 5 tokens, and 1: both join three tokens behind ROMEO:
    session.add(3, 1, "A")
    advance()
    session.add(4, 1, "ROMEO:")  # its prompt's columns lie between the others' own columns,
    advance()  # and when the first ROMEO: leaves, the cache is compacted around them
    while session.rows:
        advance()
    assert all(torch.isfinite(scores).all() for scores in seen)
    for ticket, prompt in {2: "KING:", 3: "A", 4: "ROMEO:"}.items():
        assert len(joined[ticket]) == len(alone[prompt]) == 6
        for step, (got, lone) in enumerate(zip(joined[ticket], alone[prompt], strict=True)):
            torch.testing.assert_close(got, lone, atol=1e-4, rtol=0, msg=f"{prompt} {step}")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_known_prompt_joins_from_the_prompt_cache_with_its_lone_logits(run, arch):
    """A prompt run once (alone in an idle session, or joining a running one) is kept in the
    model's PromptCache; a later request with it joins without any call for its prompt (the
    step's only call is the running rows' next token; none in an idle session), and its
    logits at every step are those of its text decoded alone, also when the entry serves a
    second time (nothing wrote into it). The cache empties when the weights change in place
    or move to another dtype, and keeps within its byte budget, least recently used out
    first."""
    from genforge.families.ar.session import PromptCache, TextSession

    tokenizer = genforge.load(run).objective.tokenizer
    lm = _big_weights_lm(len(tokenizer), arch)
    options, seen, alone = _lone_scores(lm, tokenizer, ("KING:", "ROMEO:"))
    calls: list[tuple[int, ...]] = []
    lm.register_forward_pre_hook(lambda m, a, k: calls.append(tuple(k["input_ids"].shape)),
                                 with_kwargs=True)
    cache = PromptCache()
    session = TextSession(lm, tokenizer, options, seed=0, prompts=cache)
    joined: dict[int, list[torch.Tensor]] = {3: [], 4: [], 5: []}

    def advance() -> None:
        known = [r.ticket for rows in session._waiting for r in rows]
        order = [r.ticket for r in session._running] + known  # all known: they join last
        session.advance()
        for row, ticket in enumerate(order):
            if ticket in joined:
                joined[ticket].append(seen[-1][row])

    def lone_logits(ticket: int, n: int, prompt: str) -> None:
        assert len(joined[ticket]) == 6 * n  # each step records the request's n rows
        for row in range(n):
            got_row = joined[ticket][row::n]
            for step, (got, lone) in enumerate(zip(got_row, alone[prompt], strict=True)):
                torch.testing.assert_close(got, lone, atol=1e-4, rtol=0, msg=f"{prompt} {step}")

    session.add(1, 1, "ROMEO:")  # alone in an idle session: remembered
    advance()
    session.add(2, 1, "KING:")  # joins a running row, in one call with it: remembered
    advance()
    assert len(cache) == 2
    calls.clear()
    session.add(3, 1, "ROMEO:")
    session.add(4, 2, "KING:")
    advance()
    assert calls == [(2, 1)]  # rows 1 and 2's next token, and no prompt
    while session.rows:
        advance()
    calls.clear()
    session.add(5, 1, "KING:")  # an idle session, a known prompt: its first token, no call
    while session.rows:
        advance()
    assert calls == [(1, 1)] * 5
    assert all(torch.isfinite(scores).all() for scores in seen)
    for ticket, (n, prompt) in {3: (1, "ROMEO:"), 4: (2, "KING:"), 5: (1, "KING:")}.items():
        lone_logits(ticket, n, prompt)

    lm.load_state_dict(lm.state_dict())  # weights copied in place: maybe other weights
    calls.clear()
    session.add(6, 1, "ROMEO:")  # a running session notices at its next newcomer
    advance()
    ids = genforge.load(run).objective.encode_prompt("ROMEO:")
    assert calls == [(1, len(ids))] and len(cache) == 1  # run again, and the only entry
    cache.check(lm.double())
    assert len(cache) == 0
    kv = [(torch.zeros(1, 2, 6, 16), torch.zeros(1, 2, 6, 16))] * 2  # entries of this size:
    cache.max_bytes = int(2.5 * (4 * kv[0][0].nbytes + 4 * len(tokenizer)))  # room for two
    cache.put([1, 2], kv, torch.zeros(len(tokenizer)))
    cache.put([3, 4], kv, torch.zeros(len(tokenizer)))
    cpu = torch.device("cpu")
    assert cache.get([1, 2], cpu) is not None  # used: [3, 4] is now the least recently used
    cache.put([5, 6], kv, torch.zeros(len(tokenizer)))
    assert len(cache) == 2 and cache.get([3, 4], cpu) is None
    assert cache.get([1, 2], cpu) is not None and cache.get([5, 6], cpu) is not None


def test_a_text_removed_mid_decoding_leaves_the_others_unchanged(run):
    model = genforge.load(run)
    options = {"temperature": 0, "max_new_tokens": 8}
    session = model.session(options)
    session.add(1, {"n": 1, "prompt": "ROMEO:"})
    session.step()
    session.add(2, {"n": 2, "prompt": "A"})  # pads the cache, then leaves it
    session.step()
    session.remove(2)
    got = {}
    while session.rows:
        got.update(session.step())
    assert set(got) == {1}
    assert got[1] == model.sample(1, seed=0, prompt="ROMEO:", **options)


def test_a_text_session_samples_stops_and_refuses_what_outgrows_the_context(run):
    model = genforge.load(run)
    session = model.session({"max_new_tokens": 12, "stop": ["e"]})
    session.add(1, {"n": 4, "prompt": "A"})
    session.add(2, {"n": 3})  # the model's own prompt
    got = {}
    while session.rows:
        got.update(session.step())
    assert len(got[1]) == 4 and all(t.startswith("A") and "e" not in t for t in got[1])
    assert len(got[2]) == 3 and all(len(t) <= 12 + 1 for t in got[2])
    long = model.session({"max_new_tokens": 40})  # past the 16-token context
    assert not long.accepts({"n": 1, "prompt": "ROMEO:"})
    with pytest.raises(ConfigError, match="exceed this model's context of 16"):
        long.add(1, {"n": 1, "prompt": "ROMEO:"})


def test_cli_sample_and_the_exported_folder(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    args = ["--prompt", "ROMEO:", "--max-new-tokens", "30", "--temperature", "0.8",
            "--top-p", "0.9", "--seed", "0", "--n", "2"]
    result = runner.invoke(app, ["sample", str(run), *args, "--out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 0, result.output
    texts = [json.loads(x)["text"] for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    # run/model is a transformers folder: genforge samples it the same, and transformers loads it
    from_folder = runner.invoke(app, ["sample", str(run / "model"), *args])
    assert from_folder.exit_code == 0, from_folder.output
    assert from_folder.output == f"=== sample 0 ===\n{texts[0]}\n=== sample 1 ===\n{texts[1]}\n"
    lm = AutoModelForCausalLM.from_pretrained(run / "model")
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert lm.lm_head.weight is lm.get_input_embeddings().weight  # tied
    ids = tok("ROMEO:", return_tensors="pt").input_ids
    ours = genforge.load(run).objective.nets["lm"](input_ids=ids).logits
    torch.testing.assert_close(lm(input_ids=ids).logits, ours)
    bad = runner.invoke(app, ["sample", str(run), "--horizon", "3"])
    assert bad.exit_code == 2 and "--horizon does not apply" in bad.output


def test_evaluate_text(run, tmp_path):
    from genforge.eval.text.evaluate import evaluate_text, write_text_report

    metrics = evaluate_text(run, n_samples=4, max_new_tokens=24, max_eval_tokens=3000)
    m = metrics["metrics"]
    assert m["bits_per_char"] == pytest.approx(m["val_loss"] / np.log(2))  # char level
    # the held-out loss by torch's cross-entropy of the transformers model's logits over
    # the windows of context + 1 tokens that share their edge tokens, from the first 3,000
    import torch.nn.functional as F

    from genforge.modalities.text.data import load_text

    model = genforge.load(run)
    lm, context = model.objective.nets["lm"].eval(), int(model.data_info["block_size"])
    held = torch.tensor(np.asarray(load_text(model.config.data).val)[:3000], dtype=torch.int64)
    count = (len(held) - 1) // context
    windows = torch.stack([held[w * context : (w + 1) * context + 1] for w in range(count)])
    with torch.no_grad():
        losses = [float(F.cross_entropy(lm(input_ids=w[None, :-1]).logits[0], w[1:]))
                  for w in windows]
    assert m["val_loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert metrics["protocol"]["held_out"]["tokens_evaluated"] == count * context
    assert m["perplexity"] == pytest.approx(np.exp(m["val_loss"]))
    # distinct-1 and the 8-gram copy rate by hand from the same samples (seed 0, no prompt:
    # every token is continuation): a set of the tokens, and each 8-gram looked up as a byte
    # string in the run's training split (char ids < 256), not by the eval's n-gram hashes
    continuations = [model.tokenizer.encode(text, add_special_tokens=False)
                     for text in model.sample(4, seed=0, prompt="", max_new_tokens=24,
                                              temperature=1.0, top_k=None, top_p=None)]
    tokens = [t for c in continuations for t in c]
    assert m["distinct_1"] == len(set(tokens)) / len(tokens)
    train = np.asarray(load_text(model.config.data).train)
    assert train.max() < 256
    corpus = bytes(train.astype(np.uint8))
    grams = [bytes(c[i : i + 8]) for c in continuations for i in range(len(c) - 7)]
    assert m["copy_rate_8"] == pytest.approx(np.mean([g in corpus for g in grams]), abs=1e-12)
    held_out = bytes(np.asarray(load_text(model.config.data).val)[:3000].astype(np.uint8))
    shared = np.mean([held_out[i : i + 8] in corpus for i in range(len(held_out) - 7)])
    assert m["copy_rate_8_held_out"] == pytest.approx(shared, abs=1e-12)
    assert shared > 0.1  # held-out Shakespeare shares 8-grams with train
    assert metrics["protocol"]["held_out"]["tokens_evaluated"] <= 3000
    paths = write_text_report(metrics, tmp_path / "eval", run_dir=run)
    assert json.loads(paths["metrics"].read_text())["kind"] == "text"
    assert "bits_per_char" in paths["report"].read_text()
    # the CLI sends a text run to the same evaluation, into RUN/eval
    result = runner.invoke(app, ["eval", str(run), "--n", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    written = json.loads((run / "eval" / "metrics.json").read_text())
    assert written["kind"] == "text" and written["protocol"]["samples"]["n"] == 2
    assert written["metrics"]["val_loss"] > 0 and "perplexity" in result.output


@skip_unless(TANG.exists(), "no-shared-data", str(TANG))
def test_cjk_corpus_trains_and_samples_chinese(tmp_path):
    from genforge.api import train
    from genforge.registry import load_config

    cfg = load_config("tang-poems", [*tiny("ar"), "data.limit=300", "log.sample_every=0"])
    model = genforge.load(train(cfg, out=tmp_path / "tang").run_dir)
    assert model.data_info["vocab_size"] > 500
    text = model.sample(1, seed=0, prompt="白日", max_new_tokens=10)[0]
    assert text.startswith("白日") and len(text) == 12


@skip_unless((WEIGHTS / "stories260K.bin").exists(), "no-shared-data", f"{WEIGHTS}")
def test_llama2c_conversion_reproduces_the_published_greedy_sample(tmp_path):
    """run.c -t 0.0 prints the greedy story after <s> (256 steps); the converted folder,
    loaded by genforge (and so by transformers), must print exactly the same text."""
    result = runner.invoke(app, ["convert", "llama2c", str(WEIGHTS / "stories260K.bin"),
                                 "--tokenizer", str(WEIGHTS / "tok512.bin"),
                                 "--out", str(tmp_path / "stories260K")])
    assert result.exit_code == 0, result.output
    published = (WEIGHTS / "stories260K.md").read_text().split("-t 0.0\n", 1)[1]
    published = published.split("```", 1)[0].removesuffix("\n")  # run.c ends with a newline
    model = genforge.load(tmp_path / "stories260K")
    assert model.sample(1, seed=0, temperature=0, max_new_tokens=256)[0] == published
    tok = model.objective.tokenizer
    assert tok.convert_ids_to_tokens(tok.encode("Once upon a time")) == \
        ["<s>", "▁Once", "▁upon", "▁a", "▁time"]


def test_training_without_samples_with_the_fast_optimizer(tmp_path):
    """log.sample_n=0 writes no samples; AdamW is the fused kernel, GELU the exact one (the
    fast choices on a CPU); grad norms reach metrics.jsonl as numbers."""
    from genforge.registry import load_config

    with pytest.raises(ConfigError, match="log.sample_n=-1"):
        load_config("shakespeare-char", tiny("ar", "log.sample_n=-1"))
    cfg = load_config("shakespeare-char", tiny("ar", "data.limit=2000", "log.sample_n=0"))
    result = genforge.train(cfg, out=tmp_path / "run", data_root=REPO / "data")
    assert result.step == 4 and not (tmp_path / "run" / "samples").exists()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["grad_norm/lm"] > 0 for r in rows)
    objective = genforge.load(tmp_path / "run").objective
    assert objective.configure_optimizers(cfg.train)["lm"].defaults["fused"] is True
    assert objective.nets["lm"].config.activation_function == "gelu"

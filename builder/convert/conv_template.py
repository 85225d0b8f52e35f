"""WebLLM's `conv_template` (an object in mlc-chat-config.json) derived from a model's Jinja chat template.

WebLLM does not run Jinja: it builds a prompt as system_template + per message (role + content_sep +
text + sep), then the reply header (role + empty_sep). We render the model's own template around marker
messages, cut the text between the markers into those pieces, and keep the result only if it renders the
probe conversations exactly as the Jinja template does. A model without a chat template gets a plain
text template (prompt in, continuation out).
"""

from collections.abc import Callable

MARK = {"system": "SYSQ7", "u1": "USRQ1", "a1": "ASTQ1", "u2": "USRQ2"}
PLAIN = {"system_template": "{system_message}", "system_message": "", "roles": {"user": "", "assistant": ""},
         "seps": [""], "role_content_sep": "", "role_empty_sep": "", "stop_str": [], "stop_token_ids": [],
         "add_role_after_system_message": True}

Render = Callable[[list[dict], bool], str]


def _between(text: str, a: str | None, b: str | None) -> str:
    start = text.index(a) + len(a) if a else 0
    return text[start:text.index(b, start)] if b else text[start:]


def _lcp(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _role_and_sep(prefix: str) -> tuple[str, str]:
    """'<|im_start|>user\\n' -> ('<|im_start|>user', '\\n'): trailing whitespace is the content separator."""
    role = prefix.rstrip(" \n")
    return role, prefix[len(role):]


def derive(render: Render, end_of_turn: list[str]) -> dict:
    """The conv_template pieces for `render(messages, add_generation_prompt)`; `end_of_turn`: strings that
    close a turn (the tokenizer's eos text), preferred as the message separator."""
    m = MARK
    full = render([{"role": "system", "content": m["system"]}, {"role": "user", "content": m["u1"]},
                   {"role": "assistant", "content": m["a1"]}, {"role": "user", "content": m["u2"]}], True)
    pre, mid1 = _between(full, None, m["u1"]), _between(full, m["u1"], m["a1"])
    mid2, tail = _between(full, m["a1"], m["u2"]), _between(full, m["u2"], None)
    # full = SYS + P_user + U1 + sep + P_asst + A1 + sep_a + P_user + U2 + sep + header
    common = _lcp(mid1, tail)
    sep = next((e + ("\n" if common[len(e):].startswith("\n") else "") for e in end_of_turn
                if e and common.startswith(e)), common.split("\n", 1)[0] + "\n" if "\n" in common else "")
    sep_a = next((e + ("\n" if mid2[len(e):].startswith("\n") else "") for e in end_of_turn
                  if e and mid2.startswith(e)), sep if mid2.startswith(sep) else "")
    p_asst, header, p_user = mid1[len(sep):], tail[len(sep):], mid2[len(sep_a):]
    role_a, content_sep = _role_and_sep(p_asst)
    role_u, content_sep_u = _role_and_sep(p_user)
    if not pre.endswith(p_user) or not header.startswith(role_a) or content_sep_u != content_sep:
        raise ValueError("the chat template does not split into WebLLM's role/separator pieces")
    system_part = pre[:len(pre) - len(p_user)]
    if m["system"] not in system_part:
        raise ValueError("the chat template drops the system message")
    system_template = system_part.replace(m["system"], "{system_message}")
    head, _, foot = system_template.partition("{system_message}")
    default = _between(render([{"role": "user", "content": m["u1"]}], True), None, m["u1"])[:-len(p_user) or None]
    if default.startswith(head) and default.endswith(foot) and len(default) >= len(head) + len(foot):
        system_message, render_empty = default[len(head):len(default) - len(foot)], True
    elif head.startswith(default):  # e.g. a BOS text before every prompt, a system block only when given
        system_message, render_empty = "", False
        system_template = system_template[len(default):]
    else:
        raise ValueError("the chat template's default system prompt does not fit its system template")
    conv = {"system_template": system_template, "system_message": system_message,
            "roles": {"user": role_u, "assistant": role_a}, "seps": [sep, sep_a], "role_content_sep": content_sep,
            "role_empty_sep": header[len(role_a):], "stop_str": [e for e in end_of_turn if e],
            "stop_token_ids": [], "add_role_after_system_message": True,
            "render_empty_system_message": render_empty, "system_prefix_text": default if not render_empty else ""}
    check(conv, render)
    return conv


def render_conv(conv: dict, messages: list[dict]) -> str:
    """What WebLLM's Conversation makes of `messages` (system first, then alternating user/assistant)."""
    system = next((x["content"] for x in messages if x["role"] == "system"), conv["system_message"])
    out = conv.get("system_prefix_text", "")
    if system != "" or conv.get("render_empty_system_message") is not False:
        out += conv["system_template"].replace("{system_message}", system)
    turns = [x for x in messages if x["role"] != "system"]
    for i, x in enumerate(turns):
        out += conv["roles"][x["role"]] + conv["role_content_sep"] + x["content"] + conv["seps"][i % len(conv["seps"])]
    return out + conv["roles"]["assistant"] + conv["role_empty_sep"]


def check(conv: dict, render: Render) -> None:
    m = MARK
    probes = [[{"role": "user", "content": m["u1"]}],
              [{"role": "system", "content": m["system"]}, {"role": "user", "content": m["u1"]}],
              [{"role": "user", "content": m["u1"]}, {"role": "assistant", "content": m["a1"]},
               {"role": "user", "content": m["u2"]}]]
    for p in probes:
        if render_conv(conv, p) != render(p, True):
            raise ValueError(f"the derived template renders {len(p)} messages differently")


def conv_template(tokenizer_dir, eos_ids: list[int]) -> tuple[dict, str | None]:
    """(conv_template, why it is the plain one or None) for the tokenizer in `tokenizer_dir`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    eos_text = [tok.convert_ids_to_tokens(i) for i in eos_ids if i is not None and 0 <= i < len(tok)]
    if not tok.chat_template:
        return {**PLAIN, "stop_str": eos_text, "stop_token_ids": eos_ids}, "no chat template"

    def render(messages, gen):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    try:
        conv = derive(render, eos_text)
    except Exception as e:  # noqa: BLE001 -- a template that raises on a system turn, or pieces that do not fit
        return {**PLAIN, "stop_str": eos_text, "stop_token_ids": eos_ids}, f"chat template not expressible: {e}"
    prefix = conv.pop("system_prefix_text")  # WebLLM takes a fixed prompt prefix as token ids
    if prefix:
        conv["system_prefix_token_ids"] = tok(prefix, add_special_tokens=False)["input_ids"]
    end_ids = [i for i in tok.convert_tokens_to_ids(conv["stop_str"]) if i is not None]
    conv["stop_token_ids"] = sorted({*eos_ids, *end_ids})
    return conv, None


def tokenizer_info(tokenizer_json: dict) -> dict:
    """How WebLLM should post-process token strings (used for JSON mode): byte-level BPE or byte fallback."""
    dec = tokenizer_json.get("decoder") or {}
    kinds = {dec.get("type")} | {d.get("type") for d in dec.get("decoders", []) or []}
    method = "byte_level" if "ByteLevel" in kinds else "byte_fallback" if "ByteFallback" in kinds else "raw"
    return {"token_postproc_method": method, "prepend_space_in_encode": False, "strip_space_in_decode": False}

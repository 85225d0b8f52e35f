"""conv_template derivation (builder/convert/conv_template.py): what WebLLM renders equals the Jinja template's text,
on conversations the derivation never saw, for several template families written here."""

import jinja2
import pytest

from builder.convert.conv_template import PLAIN, derive, render_conv

CHATML_DEFAULT = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nBe kind."
                  "<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CHATML_NO_DEFAULT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
NO_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
             "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}"
             "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def renderer(source: str):
    def fail(msg):
        raise jinja2.TemplateError(msg)

    tpl = jinja2.Environment().from_string(source)
    return lambda messages, gen: tpl.render(messages=messages, add_generation_prompt=gen,
                                            bos_token="<|begin_of_text|>", raise_exception=fail)


CONVERSATION = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4."},
                {"role": "user", "content": "And 3 + 3?"}]


@pytest.mark.parametrize("source,eot", [(CHATML_DEFAULT, "<|im_end|>"), (CHATML_NO_DEFAULT, "<|im_end|>"),
                                        (LLAMA3, "<|eot_id|>")])
def test_derived_template_renders_like_jinja(source, eot):
    render = renderer(source)
    conv = derive(render, [eot])
    assert conv["stop_str"] == [eot]
    for convo in (CONVERSATION, [{"role": "system", "content": "Answer briefly."}, *CONVERSATION], CONVERSATION[:1]):
        assert render_conv(conv, convo) == render(convo, True)


def test_default_system_prompt_is_kept_and_an_absent_one_is_not_rendered():
    with_default = derive(renderer(CHATML_DEFAULT), ["<|im_end|>"])
    assert with_default["system_message"] and with_default["render_empty_system_message"] is True
    without = derive(renderer(CHATML_NO_DEFAULT), ["<|im_end|>"])
    assert without["system_message"] == "" and without["render_empty_system_message"] is False


def test_a_template_without_a_system_role_is_refused():
    with pytest.raises(jinja2.TemplateError, match="no system role"):
        derive(renderer(NO_SYSTEM), ["<end_of_turn>"])
    assert PLAIN["roles"] == {"user": "", "assistant": ""}  # what a build falls back to (with a note)

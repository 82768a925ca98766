"""Renders real models' chat templates with transformers and with Rudder's engine
(`lm/examples/render_chat.rs`) on a few conversations (one with a tool call, its result and
tool schemas), and reports every difference, including the `{% generation %}` blocks that
transformers' assistant-token mask (and Rudder's SFT loss mask) covers.

The templates are the ones llama.cpp keeps for its own template tests
(`vendor/llama.cpp/models/templates/*.jinja` in the sdist of PyPI package `llama-cpp-python`),
fetched at run time, not committed. Usage:
    .venv/bin/python scripts/check_chat_templates.py [TEMPLATE_DIR]
"""
import glob, io, json, os, subprocess, sys, tarfile, urllib.parse, urllib.request

from transformers.utils.chat_template_utils import render_jinja_template

CASES = [
    ([{"role": "user", "content": "Hi <b>there</b>!"}], True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "4"}], False),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}], False),
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "q"}], True),
    # A tool call and its result (OpenAI / TRL format), rendered with TOOLS.
    ([{"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "call_1",
       "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "name": "get_weather", "tool_call_id": "call_1", "content": "22 C"},
      {"role": "assistant", "content": "It is 22 C in Paris."}], False),
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string",
                   "description": "The city"}}, "required": ["city"]}}}]
BOS, EOS = "<s>", "</s>"


def fetch(dest: str) -> str:
    """llama.cpp's template folder from the llama-cpp-python sdist (PyPI)."""
    index = "https://pypi.org/pypi/llama-cpp-python/json"
    meta = json.load(urllib.request.urlopen(index))
    # A mirror may answer with a relative address.
    url = urllib.parse.urljoin(index, next(u["url"] for u in meta["urls"] if u["packagetype"] == "sdist"))
    data = urllib.request.urlopen(url).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if "/models/templates/" in m.name and m.name.endswith(".jinja"):
                m.name = os.path.basename(m.name)
                tar.extract(m, dest)
    return dest


def tools_for(messages):
    return TOOLS if any("tool_calls" in m for m in messages) else None


def hf_render(template: str, messages, gen: bool) -> dict:
    marked = "{% generation" in template or "{%- generation" in template
    try:
        out, spans = render_jinja_template([messages], chat_template=template, tools=tools_for(messages),
                                           add_generation_prompt=gen, bos_token=BOS, eos_token=EOS,
                                           return_assistant_tokens_mask=marked)
        if marked:  # the text of each {% generation %} block, as its assistant-token mask covers
            return {"ok": out[0], "generation": [out[0][a:b] for a, b in spans[0]]}
        return {"ok": out[0]}
    except Exception as e:  # the template refuses the conversation (raise_exception, ...)
        return {"err": f"{type(e).__name__}: {e}"}


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else fetch(".cache/chat_templates")
    files = sorted(glob.glob(os.path.join(folder, "*.jinja")))
    cases, want = [], []
    for f in files:
        template = open(f).read()
        for messages, gen in CASES:
            cases.append({"file": os.path.basename(f), "template": template, "messages": messages,
                          "tools": tools_for(messages), "add_generation_prompt": gen,
                          "bos_token": BOS, "eos_token": EOS})
            want.append(hf_render(template, messages, gen))
    run = subprocess.run(["cargo", "run", "-q", "--release", "-p", "lm", "--example", "render_chat"],
                         input="".join(json.dumps(c) + "\n" for c in cases),
                         capture_output=True, text=True, check=True)
    got = [json.loads(line) for line in run.stdout.splitlines()]
    bad = 0
    for c, w, g in zip(cases, want, got):
        same = ("ok" in w and w == g) or ("err" in w and "err" in g)
        if not same:
            bad += 1
            print(f"DIFF {c['file']} case {CASES.index((c['messages'], c['add_generation_prompt']))}")
            print("  transformers:", json.dumps(w)[:600])
            print("  rudder:      ", json.dumps(g)[:600])
    print(f"{len(cases) - bad}/{len(cases)} renders agree ({len(files)} templates)")


if __name__ == "__main__":
    main()

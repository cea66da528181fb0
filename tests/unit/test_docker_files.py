"""Static checks of docker/: the compose files and Dockerfiles, without a Docker daemon.

What would otherwise surface only at `docker compose up`: a Dockerfile or bind-mount source that is
not there, a `CASCADE_*` variable no setting reads (silently ignored: `extra="ignore"`), a `COPY`
source the Dockerfile's own ignore file keeps out of the build context, a JSON-form `CMD` that is
not JSON (Docker then runs it through `sh -c` as a string), and the stack's safety settings.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cascade.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILES = sorted(DOCKER.glob("compose*.yaml"))
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
# Written by `python -m export` (and export.tensorrt), ignored by git: absent on a fresh checkout.
GENERATED_DIRS = {"artifacts", "model_repository", "ensemble"}
JSON_FORM = ("CMD", "ENTRYPOINT")
PROJECT_PACKAGES = ("cascade", "export", "orchestrator", "perf")


# --- compose -------------------------------------------------------------------------------


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def services(path: Path) -> dict[str, dict[str, Any]]:
    return load_compose(path)["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment:`, in either of compose's forms (mapping or `KEY=value` list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths of a service's bind mounts (short `src:dst[:mode]` or long `type: bind` form);
    named volumes are left out."""
    sources = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                sources.append(volume["source"])
        elif volume.startswith((".", "/", "~")):
            sources.append(volume.split(":", 1)[0])
    return sources


def build_pairs() -> list[tuple[Path, Path]]:
    """(Dockerfile, build context) of every service that builds an image, resolved as compose does."""
    pairs = []
    for compose in COMPOSE_FILES:
        for service in services(compose).values():
            build = service.get("build")
            if build is not None:
                context = (compose.parent / build["context"]).resolve()
                pairs.append((context / build["dockerfile"], context))
    return pairs


# --- settings ------------------------------------------------------------------------------


def setting_variables() -> set[str]:
    """Every environment variable Settings reads: the prefix plus each field name, upper-cased."""
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def unknown_settings(names: Iterable[str]) -> set[str]:
    """The `CASCADE_*` names in `names` that no setting reads."""
    return {name for name in names if name.startswith("CASCADE_")} - setting_variables()


# --- Dockerfiles ---------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def env_names(args: str) -> list[str]:
    """The variable names an `ENV` sets: `K=v K2=v2`, or the legacy `K v` (one variable)."""
    words = shlex.split(args)
    if "=" not in words[0]:
        return [words[0]]
    return [word.partition("=")[0] for word in words]


def copy_sources(args: str) -> list[str]:
    """The context paths a `COPY`/`ADD` reads (shell or JSON form); none for `--from` copies."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    if any(word.startswith("--from=") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def json_array(args: str) -> list[str] | None:
    """The array of a JSON-form CMD/ENTRYPOINT (or a HEALTHCHECK's CMD); None for the shell form.

    Docker falls back to the shell form when `[...]` is not valid JSON, so a typo runs as a string.
    """
    if not args.startswith("["):
        return None
    value = json.loads(args)
    if not (isinstance(value, list) and all(isinstance(word, str) for word in value)):
        raise ValueError(f"not a JSON array of strings: {args}")
    return value


def exec_arrays(dockerfile: Path) -> Iterator[tuple[str, str]]:
    """(instruction, the arguments to parse as JSON) for CMD, ENTRYPOINT and HEALTHCHECK ... CMD."""
    for keyword, args in instructions(dockerfile):
        if keyword in JSON_FORM:
            yield keyword, args
        elif keyword == "HEALTHCHECK" and " CMD " in f" {args} ":
            yield keyword, args.split("CMD", 1)[1].strip()


def python_snippets(argv: list[str]) -> list[str]:
    """The code of a `python[3] -c CODE` command line."""
    if argv and argv[0] in ("CMD", "CMD-SHELL"):
        argv = argv[1:]
    if len(argv) >= 3 and re.fullmatch(r"python3?", argv[0]) and argv[1] == "-c":
        return [argv[2]]
    return []


def project_imports(dockerfile: Path) -> list[str]:
    """The project's modules a Dockerfile's build-time import checks name (`python3 -c "import a, b"`)."""
    names = [
        name.strip()
        for keyword, args in instructions(dockerfile) if keyword == "RUN"
        for group in re.findall(r"import ((?:[\w.]+,\s*)*[\w.]+)", args)
        for name in group.split(",")
    ]
    return [name for name in names if name.split(".")[0] in PROJECT_PACKAGES]


def module_file_exists(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


# --- .dockerignore -------------------------------------------------------------------------


def ignore_patterns(text: str) -> list[str]:
    """Non-comment lines, stripped, leading `/` dropped (paths are relative to the context)."""
    lines = (line.strip() for line in text.splitlines())
    return [line.replace("!/", "!", 1).lstrip("/") for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `*` and `?` within one path element, `**` across elements."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Whether `path` (relative to the context) is left out of the build context.

    As Docker does: the last pattern that matches the path or one of its parent directories decides,
    a `!` pattern re-including what earlier ones excluded.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def _pruned(directory: str, patterns: list[str]) -> bool:
    """Whether an excluded directory can be skipped whole: no `!` pattern names a path below it or
    starts with a wildcard (Docker's builder skips such directories the same way)."""
    reopened = (p[1:] for p in patterns if p.startswith("!"))
    return is_ignored(directory, patterns) and not any(
        p.startswith(f"{directory}/") or p[:1] in "*?[" for p in reopened
    )


def sent_files(context: Path, source: str, patterns: list[str]) -> Iterator[str]:
    """The files under `source` (a file or a directory, relative to `context`) that reach the builder."""
    root = context / source
    if root.is_file():
        candidates: Iterator[str] = iter([root.relative_to(context).as_posix()])
    else:
        candidates = _walk(context, root, patterns)
    return (path for path in candidates if not is_ignored(path, patterns))


def _walk(context: Path, root: Path, patterns: list[str]) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(context).as_posix()
        dirnames[:] = [d for d in dirnames if not _pruned(posixpath.normpath(f"{base}/{d}"), patterns)]
        yield from (posixpath.normpath(f"{base}/{name}") for name in filenames)


def dockerignore(dockerfile: Path) -> Path:
    """BuildKit's per-Dockerfile ignore file, which it prefers to the context's .dockerignore."""
    return dockerfile.with_name(dockerfile.name + ".dockerignore")


# --- the helpers on samples ----------------------------------------------------------------


def test_unknown_settings_flags_a_made_up_variable() -> None:
    names = ["CASCADE_FOO", "CASCADE_PORT", "CASCADE_RECALL_CONFIG", "OPENBLAS_NUM_THREADS"]
    assert unknown_settings(names) == {"CASCADE_FOO"}


def test_settings_are_read_by_prefix_and_field_name_only() -> None:
    """`setting_variables` assumes no aliases and no nested variables; this says when that changes."""
    assert Settings.model_config.get("env_nested_delimiter") in (None, "")
    for name, field in Settings.model_fields.items():
        assert field.alias is None and field.validation_alias is None, name


def test_ignore_rules_on_a_sample() -> None:
    patterns = ignore_patterns("# allowlist\n*\n!pyproject.toml\n!/pkg\n**/__pycache__\n**/*.pyc\npkg/results\n")
    assert patterns == ["*", "!pyproject.toml", "!pkg", "**/__pycache__", "**/*.pyc", "pkg/results"]
    kept = ["pyproject.toml", "pkg", "pkg/mod.py", "pkg/sub/mod.py", "pkg/resultsx.py"]
    left_out = [
        ".venv/bin/python", "README.md", "artifacts/x.npz", "pkg/__pycache__/mod.pyc", "__pycache__/a",
        "pkg/sub/__pycache__/m.cpython-311.pyc", "pkg/sub/stale.pyc", "pkg/results/run.csv", "other/pkg/mod.py",
    ]
    assert [p for p in kept if is_ignored(p, patterns)] == []
    assert [p for p in left_out if not is_ignored(p, patterns)] == []


def test_sent_files_on_a_sample_tree(tmp_path: Path) -> None:
    for path in ["pyproject.toml", "pkg/mod.py", "pkg/__pycache__/mod.pyc", ".venv/lib/site.py", "notes/pkg/a.py"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    patterns = ["*", "!pyproject.toml", "!pkg", "**/__pycache__"]
    assert sorted(sent_files(tmp_path, ".", patterns)) == ["pkg/mod.py", "pyproject.toml"]
    assert list(sent_files(tmp_path, "notes", patterns)) == []
    assert _pruned(".venv", patterns) and not _pruned("pkg", patterns)
    assert not _pruned(".venv", [*patterns, "!**/site.py"])  # a wildcard `!` may re-include anywhere


def test_dockerfile_parsing_on_a_sample(tmp_path: Path) -> None:
    sample = tmp_path / "Dockerfile.sample"
    sample.write_text(
        'FROM python:3.11-slim\nENV A=1 \\\n    # a comment inside the continuation\n    CASCADE_PORT=8080\n'
        "ENV LEGACY some value\nCOPY --chown=1:1 pyproject.toml src/ /app/\nCOPY --from=build /x /y\n"
        'RUN pip install . && python3 -c \\\n    "import os, cascade.gone, cascade.settings"\n'
        'HEALTHCHECK --interval=5s CMD ["python", "-c", "import os"]\nCMD ["a", "b",]\n'
    )
    steps = instructions(sample)
    assert [env_names(args) for keyword, args in steps if keyword == "ENV"] == [["A", "CASCADE_PORT"], ["LEGACY"]]
    assert [copy_sources(args) for keyword, args in steps if keyword == "COPY"] == [["pyproject.toml", "src/"], []]
    assert project_imports(sample) == ["cascade.gone", "cascade.settings"]
    assert [module_file_exists(name) for name in project_imports(sample)] == [False, True]
    arrays = dict(exec_arrays(sample))
    assert python_snippets(json_array(arrays["HEALTHCHECK"]) or []) == ["import os"]
    with pytest.raises(json.JSONDecodeError):
        json_array(arrays["CMD"])  # the trailing comma: Docker would run it as a shell string


# --- compose files -------------------------------------------------------------------------


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_parses_and_builds_existing_dockerfiles(compose: Path) -> None:
    for name, service in services(compose).items():
        build = service.get("build")
        if build is not None:
            assert (compose.parent / build["context"] / build["dockerfile"]).is_file(), name


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_bind_mounts_exist_or_are_generated(compose: Path) -> None:
    for name, service in services(compose).items():
        for source in bind_sources(service):
            path = (compose.parent / source).resolve()
            generated = path.parent == REPO and path.name in GENERATED_DIRS
            assert path.exists() or generated, f"{name}: bind mount {source} does not exist"


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_sets_only_real_settings(compose: Path) -> None:
    for name, service in services(compose).items():
        assert unknown_settings(environment(service)) == set(), name


def test_override_services_depend_on_services_of_the_stack() -> None:
    known = {name for compose in COMPOSE_FILES for name in services(compose)}
    for compose in COMPOSE_FILES:
        for name, service in services(compose).items():
            assert set(service.get("depends_on") or []) <= known, f"{compose.name}: {name}"


def test_orchestrator_requires_an_admin_token_and_binds_loopback() -> None:
    orchestrator = services(DOCKER / "compose.yaml")["orchestrator"]
    token = environment(orchestrator).get("CASCADE_ADMIN_TOKEN", "")
    assert re.fullmatch(r"\$\{CASCADE_ADMIN_TOKEN:\?[^}]+\}", token), token
    assert all(str(port).startswith("127.0.0.1:") for port in orchestrator["ports"])


def test_orchestrator_gets_the_recall_config() -> None:
    orchestrator = services(DOCKER / "compose.yaml")["orchestrator"]
    path = Path(environment(orchestrator)["CASCADE_RECALL_CONFIG"])
    mounts = dict(str(volume).split(":")[:2] for volume in orchestrator["volumes"])
    host_dirs = [source for source, target in mounts.items() if path.is_relative_to(target)]
    assert host_dirs, f"nothing is mounted over {path}"
    assert (DOCKER / host_dirs[0] / path.relative_to(mounts[host_dirs[0]])).is_file()


def test_redis_persists_and_evicts_only_expiring_keys() -> None:
    compose = load_compose(DOCKER / "compose.yaml")
    redis = compose["services"]["redis"]
    argv = redis["command"]
    options = dict(zip(argv[1::2], argv[2::2]))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction" and options["--maxmemory"]
    volume = next(v.split(":")[0] for v in redis["volumes"] if v.split(":")[1] == "/data")
    assert volume in compose["volumes"]


def test_gpu_override_builds_engines_before_triton() -> None:
    gpu = services(DOCKER / "compose.gpu.yaml")
    assert gpu["triton"]["depends_on"]["engines"]["condition"] == "service_completed_successfully"
    assert environment(gpu["engines"])["CASCADE_TRITON_PROFILE"] == "gpu"


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_healthcheck_code_compiles(compose: Path) -> None:
    for name, service in services(compose).items():
        for code in python_snippets(service.get("healthcheck", {}).get("test", [])):
            compile(code, f"{compose.name}:{name}", "exec")


# --- Dockerfiles ---------------------------------------------------------------------------


def test_every_dockerfile_is_built_by_compose() -> None:
    """The checks below take the build context from compose; a Dockerfile no service builds has none."""
    assert sorted({dockerfile for dockerfile, _ in build_pairs()}) == DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_env_sets_only_real_settings(dockerfile: Path) -> None:
    names = [name for keyword, args in instructions(dockerfile) if keyword == "ENV" for name in env_names(args)]
    assert unknown_settings(names) == set()


@pytest.mark.parametrize(("dockerfile", "context"), build_pairs(), ids=lambda p: p.name)
def test_copy_sources_reach_the_builder(dockerfile: Path, context: Path) -> None:
    assert dockerignore(dockerfile).is_file(), f"{dockerfile.name} has no allowlist; the whole repo would be sent"
    patterns = ignore_patterns(dockerignore(dockerfile).read_text())
    for keyword, args in instructions(dockerfile):
        if keyword in ("COPY", "ADD"):
            for source in copy_sources(args):
                assert (context / source).exists(), f"{keyword} {source}: not in the build context"
                sent = next(sent_files(context, source, patterns), None)
                assert sent is not None, f"{keyword} {source}: excluded by the ignore file"


@pytest.mark.parametrize(("dockerfile", "context"), build_pairs(), ids=lambda p: p.name)
def test_pip_install_of_the_context_gets_pyproject(dockerfile: Path, context: Path) -> None:
    """Every image installs the project from pyproject.toml, so the ignore file must let it through."""
    assert not is_ignored("pyproject.toml", ignore_patterns(dockerignore(dockerfile).read_text()))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_json_form_arrays_parse(dockerfile: Path) -> None:
    for keyword, args in exec_arrays(dockerfile):
        argv = json_array(args)
        for code in python_snippets(argv or []):
            compile(code, f"{dockerfile.name} {keyword}", "exec")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_time_import_checks_name_existing_modules(dockerfile: Path) -> None:
    """A module renamed or removed in the tree would otherwise fail only the image build."""
    assert [name for name in project_imports(dockerfile) if not module_file_exists(name)] == []

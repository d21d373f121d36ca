#!/usr/bin/env python3
"""Generates the raw C# and Java layers of multilora from its C header.

Reads include/multilora/multilora.h (the single source of truth) and writes
  bindings/csharp/NativeMethods.g.cs                   C# P/Invoke (DllImport, Cdecl; compiles with Mono mcs)
  bindings/csharp/Status.g.cs, DType.g.cs              C# constant classes: every MLORA_STATUS_* / MLORA_DTYPE_*
  bindings/csharp/<Object>Handle.g.cs                  one SafeHandle per handle type (mlora_<object>_t), whose
                                                       ReleaseHandle calls mlora_<object>_release
  bindings/java/src/ai/multilora/MultiloraLibrary.java JNA interface (Native.load, UTF-8 strings)
  bindings/java/src/ai/multilora/Status.java, DType.java   Java constant classes (the same sets)
  python/multilora/_constants.py                       Python tables: statuses, dtypes, load flags (and every
                                                       other MLORA_<GROUP>_* group listed in CONSTANT_GROUPS)
A status or dtype added to the header reaches every language by re-running this script.

The header is read line by line, which its own rules make possible (docs/conventions.md §1):
  * a function is one line `MLORA_API [MLORA_DEPRECATED("hint")] <ret> mlora_<name>(<params>);`, documented by the
    `/** ... */` block right above it (declarations that directly follow one another share that block);
  * constants are `#define MLORA_<NAME> <integer or string>` (a trailing `/* comment */` becomes their doc);
  * types are `typedef int32_t mlora_x_t;` (scalar aliases) and `typedef struct x mlora_x_t;` (opaque handles).

One type map (docs/conventions.md §4) turns each C parameter into a C# and a Java type; a parameter shape the map does
not know stops the generator with an error naming it, so the map grows on purpose, never by accident.

Usage:
  python3 scripts/gen_bindings.py            write both files
  python3 scripts/gen_bindings.py --check    regenerate in memory; exit 1 and print a diff if a file differs
  python3 scripts/gen_bindings.py --list     print the declarations as parsed (name, params, kinds)
  python3 scripts/gen_bindings.py --names    print the declared function names (scripts/check_abi.sh uses it)
  python3 scripts/gen_bindings.py --signatures   print each function's C signature, one a line (the marshalling
                                                 checks in bindings/*/tests compare the shims against it)
  python3 scripts/gen_bindings.py --lint-ownership   list pointer parameters (inputs, outputs and caller
                                                     buffers) whose doc has no ownership word, and names one
                                                     parameter spelling that gets different words in different
                                                     functions of the same kind (scripts/lint.sh runs it)
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "multilora" / "multilora.h"
HEADER_REL = "include/multilora/multilora.h"
CS_OUT = ROOT / "bindings" / "csharp" / "NativeMethods.g.cs"
JAVA_DIR = ROOT / "bindings" / "java" / "src" / "ai" / "multilora"
JAVA_OUT = JAVA_DIR / "MultiloraLibrary.java"
CS_DIR = ROOT / "bindings" / "csharp"
CS_STATUS_OUT = ROOT / "bindings" / "csharp" / "Status.g.cs"
CS_DTYPE_OUT = ROOT / "bindings" / "csharp" / "DType.g.cs"
JAVA_STATUS_OUT = JAVA_DIR / "Status.java"
JAVA_DTYPE_OUT = JAVA_DIR / "DType.java"
PY_OUT = ROOT / "python" / "multilora" / "_constants.py"
# MLORA_<GROUP>_<NAME> groups carried into the Python tables (a group absent from the header is left out).
CONSTANT_GROUPS = ("STATUS", "DTYPE", "LOAD", "FINISH")
GENERATOR = "scripts/gen_bindings.py"

# Macros that are part of the header's machinery, not constants of the API.
NOT_CONSTANTS = {"MLORA_API", "MLORA_DEPRECATED", "MLORA_BUILDING_LIBRARY"}
OWNERSHIP_WORDS = ("owned", "borrowed", "copied")

# C scalar types that cross the ABI (docs/conventions.md §1). typedefs of these are added from the header.
SCALARS = {"int32_t", "int64_t", "uint32_t", "uint64_t", "float", "double", "size_t"}


class GenError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Param:
    ctype: str  # normalised C type, e.g. "const mlora_tensor_t* const*"
    name: str
    kind: str = ""  # filled by classify()
    base: str = ""  # the scalar or handle type the pointer levels are applied to


@dataclass
class Function:
    name: str
    ret: str
    params: list[Param]
    doc: list[str]
    line: str  # the C declaration as written, without MLORA_API
    deprecated: str | None = None


@dataclass
class Constant:
    name: str
    value: str  # C literal text
    is_string: bool
    doc: str


@dataclass
class Header:
    functions: list[Function] = field(default_factory=list)
    constants: list[Constant] = field(default_factory=list)
    scalar_typedefs: dict[str, str] = field(default_factory=dict)  # alias -> underlying scalar
    handles: dict[str, str] = field(default_factory=dict)  # typedef name -> doc
    abi_version: str = ""
    version: str = ""


DECL_RE = re.compile(
    r"^MLORA_API\s+(?:MLORA_DEPRECATED\(\s*\"((?:[^\"\\]|\\.)*)\"\s*\)\s+)?(.+?)\s*\b(mlora_\w+)\s*\((.*)\)\s*;\s*$"
)
DEFINE_RE = re.compile(r"^#define\s+(MLORA_\w+)\s+(.+?)\s*(?:/\*\s*(.*?)\s*\*/)?\s*$")
TYPEDEF_SCALAR_RE = re.compile(r"^typedef\s+(\w+)\s+(mlora_\w+_t)\s*;")
TYPEDEF_HANDLE_RE = re.compile(r"^typedef\s+struct\s+(\w+)\s+(mlora_\w+_t)\s*;")


def norm_type(text: str) -> str:
    """'const  mlora_tensor_t *const *' -> 'const mlora_tensor_t* const*'."""
    t = re.sub(r"\s+", " ", text.strip())
    t = re.sub(r"\s*\*\s*", "* ", t).strip()
    return t.replace("* *", "**").replace("**", "* *").replace("* *", "**").strip()


def split_param(text: str) -> Param:
    text = text.strip()
    m = re.match(r"^(.*?)(\w+)$", text)
    if not m or not m.group(1).strip():
        raise GenError(f"cannot read parameter {text!r}")
    return Param(ctype=norm_type(m.group(1)), name=m.group(2))


def clean_doc(block: list[str]) -> list[str]:
    out = []
    for raw in block:
        s = raw.strip()
        s = re.sub(r"^/\*\*+", "", s)
        s = re.sub(r"\*+/$", "", s)
        s = re.sub(r"^\*(?!/)\s?", "", s)
        out.append(s.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def parse_header(text: str) -> Header:
    h = Header()
    lines = text.splitlines()
    pending_doc: list[str] | None = None  # the last /** */ block not yet used
    shared_doc: list[str] | None = None  # doc of the previous declaration, for declarations that follow it
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("/**"):
            block = [s]
            while "*/" not in block[-1] or (len(block) == 1 and s.endswith("/**")):
                i += 1
                if i >= len(lines):
                    raise GenError("unterminated doc comment")
                block.append(lines[i])
            pending_doc = clean_doc(block)
            shared_doc = None
            i += 1
            continue
        if s.startswith("MLORA_API"):
            m = DECL_RE.match(s)
            if not m:
                raise GenError(f"line {i + 1}: declaration not in the one-line shape: {s}")
            dep, ret, name, params_text = m.groups()
            if pending_doc is not None:
                doc = pending_doc
            elif shared_doc is not None:
                doc = shared_doc
            else:
                raise GenError(f"line {i + 1}: {name} has no doc block")
            params: list[Param] = []
            pt = params_text.strip()
            if pt and pt != "void":
                params = [split_param(p) for p in pt.split(",")]
            decl = s[len("MLORA_API") :].strip()
            decl = re.sub(r"^MLORA_DEPRECATED\(\s*\"(?:[^\"\\]|\\.)*\"\s*\)\s+", "", decl)
            h.functions.append(Function(name, norm_type(ret), params, doc, decl, dep))
            pending_doc = None
            shared_doc = doc
            i += 1
            continue
        if s.startswith("#define"):
            m = DEFINE_RE.match(s)
            if m and m.group(1) not in NOT_CONSTANTS and "(" not in m.group(1):
                name, value, comment = m.group(1), m.group(2).strip(), m.group(3) or ""
                is_string = value.startswith('"')
                if not is_string and not re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", value):
                    raise GenError(f"line {i + 1}: constant {name} has a value the generator cannot carry: {value}")
                doc = comment
                if not doc and pending_doc:
                    doc = " ".join(x.strip() for x in pending_doc)
                h.constants.append(Constant(name, value, is_string, doc))
                if name == "MLORA_ABI_VERSION":
                    h.abi_version = value
                if name == "MLORA_VERSION_STRING":
                    h.version = value.strip('"')
            shared_doc = None
            i += 1
            continue
        m = TYPEDEF_HANDLE_RE.match(s)
        if m:
            h.handles[m.group(2)] = " ".join(pending_doc or [])
            pending_doc = None
            shared_doc = None
            i += 1
            continue
        m = TYPEDEF_SCALAR_RE.match(s)
        if m:
            if m.group(1) not in SCALARS:
                raise GenError(f"line {i + 1}: typedef of {m.group(1)} is not a fixed-width scalar")
            h.scalar_typedefs[m.group(2)] = m.group(1)
            pending_doc = None
            shared_doc = None
            i += 1
            continue
        if s and not s.startswith("/*") and not s.startswith("*"):
            shared_doc = None
            if not s.startswith("#"):
                pending_doc = None
        i += 1
    if not h.abi_version:
        raise GenError("MLORA_ABI_VERSION not found in the header")
    for f in h.functions:
        for p in f.params:
            classify(h, f, p)
        classify_return(h, f)
    return h


# ---------------------------------------------------------------------------------------------------------------
# The type map
# ---------------------------------------------------------------------------------------------------------------
# Parameter kinds:
#   scalar         value of a fixed-width scalar (typedefs resolved)
#   handle         T* / const T* of an opaque handle
#   handle_out     T** out_x: receives one owned handle
#   handle_out_arr T** documented as a "caller array": receives several owned handles
#   handle_arr     const T* const*: input array of handles
#   str            const char*: input UTF-8 string
#   str_arr        const char* const*: input array of UTF-8 strings
#   char_buf       char*: caller buffer receiving UTF-8 bytes
#   data           const void*: raw input bytes
#   data_out       const void** out_x: receives a borrowed data pointer
#   scalar_out     S* out_x: receives one scalar
#   scalar_buf     S* (not out_): caller buffer receiving scalars
#   scalar_arr     const S*: input array of scalars


def resolve_scalar(h: Header, t: str) -> str | None:
    if t in SCALARS:
        return t
    return h.scalar_typedefs.get(t)


def param_doc(f: Function, name: str) -> str:
    """The text after '@param[...] name' in the function's doc, up to the next @param or blank line."""
    text = " ".join(f.doc)
    pattern = r"@param\[(in|out|in,out)\]\s+" + re.escape(name) + r"\b(.*?)(?=@param|Returns:|Thread-safety:|$)"
    m = re.search(pattern, text)
    return (m.group(1) + "] " + re.sub(r"\s+", " ", m.group(2)).strip()) if m else ""


def classify(h: Header, f: Function, p: Param) -> None:
    t = p.ctype
    # Tokens: [const] base, then pointer levels left to right (levels[0] is the innermost pointer)
    toks = t.replace("*", " * ").split()
    const_base = False
    if toks and toks[0] == "const":
        const_base = True
        toks = toks[1:]
    if not toks:
        raise GenError(f"{f.name}: cannot read type of {p.name}")
    base = toks[0]
    rest = toks[1:]
    levels: list[bool] = []  # pointer levels, True if that pointer itself is const
    for tok in rest:
        if tok == "*":
            levels.append(False)
        elif tok == "const" and levels:
            levels[-1] = True
        else:
            raise GenError(f"{f.name}: cannot read type {t!r} of {p.name}")
    p.base = base
    scalar = resolve_scalar(h, base)
    is_out = p.name.startswith("out_")
    doc = param_doc(f, p.name)
    if base in h.handles:
        if len(levels) == 1:
            p.kind = "handle"
        elif len(levels) == 2 and const_base and levels[0]:
            p.kind = "handle_arr"
        elif len(levels) == 2 and not const_base and not levels[0]:
            p.kind = "handle_out_arr" if "caller array" in doc else "handle_out"
            if p.kind == "handle_out" and not is_out:
                raise GenError(f"{f.name}: handle out-parameter {p.name} must be named out_*")
        else:
            raise GenError(f"{f.name}: unsupported handle shape {t!r} for {p.name}")
    elif base == "char":
        if levels == [False] and const_base:
            p.kind = "str"
        elif levels == [True, False] and const_base:
            p.kind = "str_arr"
        elif levels == [False] and not const_base:
            p.kind = "char_buf"
        else:
            raise GenError(f"{f.name}: unsupported string shape {t!r} for {p.name}")
    elif base == "void":
        if levels == [False] and const_base:
            p.kind = "data"
        elif levels == [False, False] and const_base and is_out:
            p.kind = "data_out"
        else:
            raise GenError(f"{f.name}: unsupported void pointer shape {t!r} for {p.name}")
    elif scalar:
        p.base = scalar
        if not levels:
            p.kind = "scalar"
        elif levels == [False] and const_base:
            p.kind = "scalar_arr"
        elif levels == [False] and not const_base:
            p.kind = "scalar_out" if is_out else "scalar_buf"
        else:
            raise GenError(f"{f.name}: unsupported scalar pointer shape {t!r} for {p.name}")
    else:
        raise GenError(f"{f.name}: type {base!r} of {p.name} is not in the type map")


def classify_return(h: Header, f: Function) -> None:
    r = f.ret
    if r == "void" or resolve_scalar(h, r):
        return
    if r == "const char*":
        return
    raise GenError(f"{f.name}: return type {r!r} is not in the type map")


CS_KEYWORDS = set(
    "abstract as base bool break byte case catch char checked class const continue decimal default delegate do "
    "double else enum event explicit extern false finally fixed float for foreach goto if implicit in int interface "
    "internal is lock long namespace new null object operator out override params private protected public readonly "
    "ref return sbyte sealed short sizeof stackalloc static string struct switch this throw true try typeof uint "
    "ulong unchecked unsafe ushort using virtual void volatile while".split()
)
JAVA_KEYWORDS = set(
    "abstract assert boolean break byte case catch char class const continue default do double else enum extends "
    "final finally float for goto if implements import instanceof int interface long native new package private "
    "protected public return short static strictfp super switch synchronized this throw throws transient try void "
    "volatile while true false null var record yield".split()
)


def cs_name(n: str) -> str:
    return "@" + n if n in CS_KEYWORDS else n


def java_name(n: str) -> str:
    return n + "_" if n in JAVA_KEYWORDS else n


CS_SCALAR = {
    "int32_t": "int",
    "int64_t": "long",
    "uint32_t": "uint",
    "uint64_t": "ulong",
    "float": "float",
    "double": "double",
    "size_t": "UIntPtr",
}
JAVA_SCALAR = {
    "int32_t": "int",
    "int64_t": "long",
    "uint32_t": "int",
    "uint64_t": "long",
    "float": "float",
    "double": "double",
    "size_t": "SizeT",
}
JAVA_BYREF = {
    "int32_t": "IntByReference",
    "uint32_t": "IntByReference",
    "int64_t": "LongByReference",
    "uint64_t": "LongByReference",
    "float": "FloatByReference",
    "double": "DoubleByReference",
    "size_t": "SizeTByReference",
}


def cs_param(p: Param) -> str:
    k = p.kind
    if k == "scalar":
        return f"{CS_SCALAR[p.base]} {cs_name(p.name)}"
    if k == "handle":
        return f"IntPtr {cs_name(p.name)}"
    if k == "handle_out":
        return f"out IntPtr {cs_name(p.name)}"
    if k == "handle_out_arr":
        return f"[Out] IntPtr[] {cs_name(p.name)}"
    if k in ("handle_arr", "str_arr"):
        return f"IntPtr[] {cs_name(p.name)}"
    if k == "str":
        return f"byte[] {cs_name(p.name)}"
    if k == "char_buf":
        return f"[Out] byte[] {cs_name(p.name)}"
    if k == "data":
        return f"IntPtr {cs_name(p.name)}"
    if k == "data_out":
        return f"out IntPtr {cs_name(p.name)}"
    if k == "scalar_out":
        return f"out {CS_SCALAR[p.base]} {cs_name(p.name)}"
    if k == "scalar_buf":
        return f"[Out] {CS_SCALAR[p.base]}[] {cs_name(p.name)}"
    if k == "scalar_arr":
        return f"{CS_SCALAR[p.base]}[] {cs_name(p.name)}"
    raise GenError(f"no C# mapping for {k}")


def java_param(p: Param) -> str:
    k = p.kind
    if k == "scalar":
        return f"{JAVA_SCALAR[p.base]} {java_name(p.name)}"
    if k == "handle":
        return f"Pointer {java_name(p.name)}"
    if k == "handle_out":
        return f"PointerByReference {java_name(p.name)}"
    if k in ("handle_out_arr", "handle_arr", "str_arr", "data"):
        return f"Pointer {java_name(p.name)}"
    if k in ("str", "char_buf"):
        return f"byte[] {java_name(p.name)}"
    if k == "data_out":
        return f"PointerByReference {java_name(p.name)}"
    if k == "scalar_out":
        return f"{JAVA_BYREF[p.base]} {java_name(p.name)}"
    if k in ("scalar_buf", "scalar_arr"):
        if p.base == "size_t":
            return f"Pointer {java_name(p.name)}"
        return f"{JAVA_SCALAR[p.base]}[] {java_name(p.name)}"
    raise GenError(f"no Java mapping for {k}")


def cs_ret(h: Header, f: Function) -> str:
    if f.ret == "void":
        return "void"
    if f.ret == "const char*":
        return "IntPtr"
    return CS_SCALAR[resolve_scalar(h, f.ret)]


def java_ret(h: Header, f: Function) -> str:
    if f.ret == "void":
        return "void"
    if f.ret == "const char*":
        return "Pointer"
    return JAVA_SCALAR[resolve_scalar(h, f.ret)]


# How each kind is marshalled, for the doc comments of the generated files.
KIND_NOTE = {
    "handle_out_arr": "caller array of handle slots",
    "handle_arr": "array of handles",
    "str": "UTF-8 bytes ending in NUL",
    "str_arr": "array of pointers to NUL-terminated UTF-8 strings",
    "char_buf": "caller buffer receiving UTF-8 bytes",
    "data": "pointer to raw bytes",
    "data_out": "receives a borrowed pointer",
    "scalar_buf": "caller buffer",
    "scalar_arr": "input array",
}


def ownership(f: Function, p: Param) -> str:
    """The ownership word the header doc gives a pointer parameter, or ''."""
    doc = param_doc(f, p.name)
    for w in OWNERSHIP_WORDS:
        if re.search(r"\b" + w + r"\b", doc):
            return w
    return ""


def is_pointer(p: Param) -> bool:
    return p.kind not in ("scalar",)


# ---------------------------------------------------------------------------------------------------------------
# Emitters
# ---------------------------------------------------------------------------------------------------------------


def xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def java_doc_escape(s: str) -> str:
    return xml_escape(s).replace("*/", "*&#47;").replace("@", "&#64;")


def banner(h: Header, comment: str) -> list[str]:
    return [
        f"{comment} <auto-generated>",
        f"{comment} Generated by {GENERATOR} from {HEADER_REL}",
        f"{comment} (MLORA_ABI_VERSION {h.abi_version}, MLORA_VERSION_STRING {h.version}).",
        f"{comment} DO NOT EDIT: change the header and run `python3 {GENERATOR}`; CI runs it with --check.",
        f"{comment} </auto-generated>",
    ]


def param_lines(f: Function) -> list[tuple[str, str]]:
    out = []
    for p in f.params:
        notes = []
        d = param_doc(f, p.name)
        own = ownership(f, p)
        if own:
            notes.append(own)
        if p.kind in KIND_NOTE:
            notes.append(KIND_NOTE[p.kind])
        text = "; ".join(notes)
        if d:
            text = (text + ". " if text else "") + "Header: [" + d
        out.append((p.name, text))
    return out


def emit_csharp(h: Header) -> str:
    L: list[str] = []
    L += banner(h, "//")
    L += [
        "// Raw P/Invoke layer of the multilora C ABI: one method per C function, named exactly as in C.",
        "// Type map: int32_t->int, int64_t->long, uint64_t->ulong, float/double, size_t->UIntPtr, handle->IntPtr,",
        "// out handle->out IntPtr, input string->byte[] (UTF-8 + NUL), string/handle arrays->IntPtr[],",
        "// caller buffers->byte[]/long[]/int[], const void*->IntPtr, returned const char*->IntPtr (borrowed UTF-8).",
        "// Use the idiomatic classes beside this file (Library.cs, Model.cs, ...) unless you need the raw calls.",
        "",
        "using System;",
        "using System.Runtime.InteropServices;",
        "",
        "namespace Multilora.Native",
        "{",
        "    /// <summary>Raw declarations of include/multilora/multilora.h.</summary>",
        "    public static class NativeMethods",
        "    {",
        "        /// <summary>Name passed to DllImport; resolves to libmultilora.so on Linux.</summary>",
        '        public const string LibraryName = "multilora";',
        "",
        "        /// <summary>MLORA_ABI_VERSION of the header these declarations were generated from.</summary>",
        f"        public const int GeneratedAbiVersion = {h.abi_version};",
        "",
    ]
    for c in h.constants:
        if c.doc:
            L.append(f"        /// <summary>{xml_escape(c.doc)}</summary>")
        typ = "string" if c.is_string else "int"
        L.append(f"        public const {typ} {c.name} = {c.value};")
    L.append("")
    for f in h.functions:
        L.append("        /// <summary>")
        for d in f.doc:
            L.append(f"        /// {xml_escape(d)}".rstrip())
        L.append("        /// </summary>")
        L.append(f"        /// <remarks>C: <c>{xml_escape(f.line)}</c></remarks>")
        for name, text in param_lines(f):
            L.append(f'        /// <param name="{name}">{xml_escape(text)}</param>')  # doc names stay unescaped
        if f.ret == "const char*":
            L.append("        /// <returns>Borrowed pointer to a NUL-terminated UTF-8 string (see summary).</returns>")
        if f.deprecated is not None:
            L.append(f'        [Obsolete("{f.deprecated}")]')
        L.append("        [DllImport(LibraryName, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]")
        params = ", ".join(cs_param(p) for p in f.params)
        L.append(f"        public static extern {cs_ret(h, f)} {f.name}({params});")
        L.append("")
    if L[-1] == "":
        L.pop()
    L += ["    }", "}", ""]
    return "\n".join(L)


def emit_java(h: Header) -> str:
    L: list[str] = []
    L += banner(h, "//")
    L += [
        "package ai.multilora;",
        "",
        "import com.sun.jna.IntegerType;",
        "import com.sun.jna.Library;",
        "import com.sun.jna.Native;",
        "import com.sun.jna.Pointer;",
        "import com.sun.jna.ptr.ByReference;",
        "import com.sun.jna.ptr.DoubleByReference;",
        "import com.sun.jna.ptr.FloatByReference;",
        "import com.sun.jna.ptr.IntByReference;",
        "import com.sun.jna.ptr.LongByReference;",
        "import com.sun.jna.ptr.PointerByReference;",
        "import java.util.Collections;",
        "",
        "/**",
        " * Raw JNA layer of the multilora C ABI: one method per C function, named exactly as in C.",
        " * <p>Type map: int32_t-&gt;int, int64_t/uint64_t-&gt;long, float/double, size_t-&gt;{@link SizeT},",
        " * handle-&gt;Pointer, out handle-&gt;PointerByReference, input string-&gt;byte[] (UTF-8 + NUL), string,",
        " * handle and size_t arrays-&gt;Pointer to native memory, caller buffers-&gt;byte[]/long[]/int[],",
        " * const void*-&gt;Pointer, returned const char*-&gt;Pointer (borrowed UTF-8).",
        " * Use the idiomatic classes of this package unless you need the raw calls.",
        " */",
        '@SuppressWarnings({"unused", "checkstyle:MethodName"})',
        "public interface MultiloraLibrary extends Library {",
        "    /** Library name given to {@link Native#load}; resolves to libmultilora.so on Linux. */",
        '    String LIBRARY_NAME = "multilora";',
        "",
        "    /** MLORA_ABI_VERSION of the header these declarations were generated from. */",
        f"    int GENERATED_ABI_VERSION = {h.abi_version};",
        "",
    ]
    for c in h.constants:
        if c.doc:
            L.append(f"    /** {java_doc_escape(c.doc)} */")
        typ = "String" if c.is_string else "int"
        L.append(f"    {typ} {c.name} = {c.value};")
    L += [
        "",
        "    /** C size_t: an unsigned integer of {@link Native#SIZE_T_SIZE} bytes. */",
        "    class SizeT extends IntegerType {",
        "        private static final long serialVersionUID = 1L;",
        "",
        "        public SizeT() {",
        "            this(0);",
        "        }",
        "",
        "        public SizeT(long value) {",
        "            super(Native.SIZE_T_SIZE, value, true);",
        "        }",
        "    }",
        "",
        "    /** C size_t* out-parameter. */",
        "    class SizeTByReference extends ByReference {",
        "        public SizeTByReference() {",
        "            this(0);",
        "        }",
        "",
        "        public SizeTByReference(long value) {",
        "            super(Native.SIZE_T_SIZE);",
        "            setValue(value);",
        "        }",
        "",
        "        public void setValue(long value) {",
        "            if (Native.SIZE_T_SIZE == 8) {",
        "                getPointer().setLong(0, value);",
        "            } else {",
        "                getPointer().setInt(0, (int) value);",
        "            }",
        "        }",
        "",
        "        public long getValue() {",
        "            return Native.SIZE_T_SIZE == 8 ? getPointer().getLong(0)",
        "                    : (getPointer().getInt(0) & 0xFFFFFFFFL);",
        "        }",
        "    }",
        "",
        "    /** Loads libmultilora with UTF-8 as JNA's string encoding (no ABI check: see the idiomatic layer). */",
        "    static MultiloraLibrary load() {",
        "        return Native.load(LIBRARY_NAME, MultiloraLibrary.class,",
        '                Collections.singletonMap(Library.OPTION_STRING_ENCODING, "UTF-8"));',
        "    }",
        "",
    ]
    for f in h.functions:
        L.append("    /**")
        L.append("     * <pre>")
        for d in f.doc:
            L.append(f"     * {java_doc_escape(d)}".rstrip())
        L.append("     * </pre>")
        L.append(f"     * C: {{@code {java_doc_escape(f.line)}}}")
        for name, text in param_lines(f):
            L.append(f"     * @param {java_name(name)} {java_doc_escape(text) or '-'}")
        if f.ret == "const char*":
            L.append("     * @return borrowed pointer to a NUL-terminated UTF-8 string")
        elif f.ret != "void":
            L.append(f"     * @return {java_doc_escape(f.ret)}")
        L.append("     */")
        if f.deprecated is not None:
            L.append("    @Deprecated")
        params = ", ".join(java_param(p) for p in f.params)
        L.append(f"    {java_ret(h, f)} {f.name}({params});")
        L.append("")
    if L[-1] == "":
        L.pop()
    L += ["}", ""]
    return "\n".join(L)


def group(h: Header, prefix: str) -> list[tuple[str, Constant]]:
    """(short name, constant) of every integer MLORA_<prefix>_* constant, in header order."""
    head = f"MLORA_{prefix}_"
    return [(c.name[len(head) :], c) for c in h.constants if c.name.startswith(head) and not c.is_string]


def pascal(short: str) -> str:
    """NOT_FOUND -> NotFound; for dtypes: UINT8 -> UInt8, BFLOAT16 -> BFloat16, FLOAT32 -> Float32."""
    out = []
    for part in short.lower().split("_"):
        m = re.fullmatch(r"(u|b)?(int|float|bool)(\d*)", part)
        if m:
            out.append((m.group(1) or "").upper() + m.group(2).capitalize() + m.group(3))
        else:
            out.append(part.capitalize())
    return "".join(out)


def emit_csharp_constants(h: Header, prefix: str, cls: str, summary: str) -> str:
    L = banner(h, "//")
    L += [
        "",
        "namespace Multilora",
        "{",
        f"    /// <summary>{xml_escape(summary)}</summary>",
        f"    public static class {cls}",
        "    {",
    ]
    for short, c in group(h, prefix):
        if c.doc:
            L.append(f"        /// <summary>{xml_escape(c.doc)}</summary>")
        L.append(f"        public const int {pascal(short)} = Native.NativeMethods.{c.name};")
    L += ["    }", "}", ""]
    return "\n".join(L)


def handle_classes(h: Header) -> dict[str, str]:
    """C# SafeHandle class name -> release function, for every handle typedef mlora_<object>_t."""
    names = {f.name for f in h.functions}
    out = {}
    for typedef in h.handles:
        obj = typedef[len("mlora_") : -len("_t")]
        release = f"mlora_{obj}_release"
        if release not in names:
            raise GenError(f"handle type {typedef} has no {release}")
        out[pascal(obj) + "Handle"] = release
    return out


def emit_csharp_handle(h: Header, cls: str, release: str) -> str:
    typedef = release[: -len("_release")] + "_t"
    L = banner(h, "//")
    L += [
        "",
        "using Multilora.Native;",
        "",
        "namespace Multilora",
        "{",
        f"    /// <summary>SafeHandle of a {typedef}: ReleaseHandle calls {release}.</summary>",
        f"    public sealed class {cls} : MultiloraHandle",
        "    {",
        f"        protected override bool ReleaseHandle() {{ NativeMethods.{release}(handle); return true; }}",
        "    }",
        "}",
        "",
    ]
    return "\n".join(L)


def emit_java_constants(h: Header, prefix: str, cls: str, summary: str) -> str:
    L = banner(h, "//")
    L += ["package ai.multilora;", "", f"/** {java_doc_escape(summary)} */", f"public final class {cls} {{"]
    for short, c in group(h, prefix):
        if c.doc:
            L.append(f"    /** {java_doc_escape(c.doc)} */")
        L.append(f"    public static final int {short} = MultiloraLibrary.{c.name};")
    L += ["", f"    private {cls}() {{}}", "}", ""]
    return "\n".join(L)


def emit_python(h: Header) -> str:
    L = banner(h, "#")
    L += [
        '"""Constants of multilora.h for the Python package: one table per MLORA_<GROUP>_* group."""',
        "",
        "from typing import Dict",
        "",
        "ABI_VERSION = " + h.abi_version,
        "",
    ]
    for prefix in CONSTANT_GROUPS:
        members = group(h, prefix)
        if not members:
            continue
        L.append(f"#: MLORA_{prefix}_<NAME> -> value, keyed by <NAME>")
        L.append(f"{prefix}: Dict[str, int] = {{")
        for short, c in members:
            L.append(f'    "{short}": {c.value},' + (f"  # {c.doc}" if c.doc else ""))
        L.append("}")
        L.append(f"#: value -> full constant name (MLORA_{prefix}_<NAME>)")
        L.append(f'{prefix}_NAMES: Dict[int, str] = {{v: "MLORA_{prefix}_" + k for k, v in {prefix}.items()}}')
        L.append("")
    L.pop()
    L.append("")
    return "\n".join(L)


STATUS_DOC = "The C statuses (MLORA_STATUS_*): every value a call can fail with."
DTYPE_DOC = "Element types, numbered as ONNX TensorProto.DataType (the C MLORA_DTYPE_* values)."


def outputs(h: Header) -> dict[Path, str]:
    return {
        CS_OUT: emit_csharp(h),
        CS_STATUS_OUT: emit_csharp_constants(h, "STATUS", "Status", STATUS_DOC),
        CS_DTYPE_OUT: emit_csharp_constants(h, "DTYPE", "DType", DTYPE_DOC),
        JAVA_OUT: emit_java(h),
        JAVA_STATUS_OUT: emit_java_constants(h, "STATUS", "Status", STATUS_DOC),
        JAVA_DTYPE_OUT: emit_java_constants(h, "DTYPE", "DType", DTYPE_DOC),
        PY_OUT: emit_python(h),
        **{CS_DIR / f"{cls}.g.cs": emit_csharp_handle(h, cls, rel) for cls, rel in handle_classes(h).items()},
    }


# Parameter kinds that must carry an ownership word: every pointer but the receiver and scalar out-params
# (out_count, out_len, ...: plain values written for the caller). Caller buffers (char_buf, scalar_buf) are
# "borrowed for the call": the library writes into them during the call and keeps no pointer.
OWNERSHIP_KINDS = (
    "handle",
    "handle_arr",
    "str",
    "str_arr",
    "data",
    "handle_out",
    "handle_out_arr",
    "data_out",
    "char_buf",
    "scalar_buf",
    "scalar_arr",
)


def lint_ownership(h: Header) -> int:
    """Every pointer parameter of OWNERSHIP_KINDS has an ownership word, and one parameter spelling of one kind
    has the same word in every function (a string `name` is not "copied" in one setter and "borrowed" in its
    twin); a function whose name carries the word (mlora_tensor_create_borrowed) may differ on purpose."""
    problems = 0
    seen: dict[tuple[str, str], dict[str, list[str]]] = {}
    for f in h.functions:
        for idx, p in enumerate(f.params):
            if idx == 0 and p.kind == "handle":
                continue  # the receiver: borrowed for the call by convention
            if p.kind not in OWNERSHIP_KINDS:
                continue
            word = ownership(f, p)
            if not word:
                print(f"{f.name}: {p.name} ({p.ctype}) has no ownership word")
                problems += 1
            elif word not in f.name:
                seen.setdefault((p.kind, p.name), {}).setdefault(word, []).append(f.name)
    for (kind, name), words in sorted(seen.items()):
        if len(words) > 1:
            detail = "; ".join(f"{w} in {', '.join(fs)}" for w, fs in sorted(words.items()))
            print(f"parameter {name} ({kind}) has different ownership words: {detail}")
            problems += 1
    print(f"{problems} ownership problems")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail with a diff if the generated files are stale")
    ap.add_argument("--list", action="store_true", help="print the parsed declarations")
    ap.add_argument("--names", action="store_true", help="print the declared function names, one a line")
    ap.add_argument(
        "--signatures",
        action="store_true",
        help="print 'name<TAB>return<TAB>param=ctype,...' per function (for the marshalling checks)",
    )
    ap.add_argument("--lint-ownership", action="store_true", help="list pointer params lacking an ownership word")
    ap.add_argument("--header", type=Path, default=HEADER)
    args = ap.parse_args(argv)
    try:
        h = parse_header(args.header.read_text(encoding="utf-8"))
    except GenError as e:
        print(f"gen_bindings: {e}", file=sys.stderr)
        return 2
    if args.signatures:
        # typedefs of scalars resolved; a T** that receives several handles is marked [array]
        def spell(ctype: str, kind: str = "") -> str:
            for alias, base in h.scalar_typedefs.items():
                ctype = re.sub(r"\b" + alias + r"\b", base, ctype)
            return ctype + (" [array]" if kind == "handle_out_arr" else "")

        for f in h.functions:
            ps = ",".join(f"{p.name}={spell(p.ctype, p.kind)}" for p in f.params)
            print(f"{f.name}\t{spell(f.ret)}\t{ps}")
        return 0
    if args.names:
        print("\n".join(sorted(f.name for f in h.functions)))
        return 0
    if args.list:
        for f in h.functions:
            ps = ", ".join(f"{p.name}:{p.kind}" for p in f.params)
            print(f"{f.name}({ps}) -> {f.ret}")
        print(f"{len(h.functions)} functions, {len(h.constants)} constants, {len(h.handles)} handle types")
        return 0
    if args.lint_ownership:
        return lint_ownership(h)
    gen = outputs(h)
    # A generated C# file the header no longer asks for (a removed handle type) is stale too.
    leftovers = [p for p in sorted(CS_DIR.glob("*.g.cs")) if p not in gen]
    if args.check:
        stale = len(leftovers)
        for path in leftovers:
            print(f"{path.relative_to(ROOT)}: generated file the header no longer produces")
        for path, text in gen.items():
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            if old != text:
                stale += 1
                rel = path.relative_to(ROOT)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        old.splitlines(keepends=True), text.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"
                    )
                )
        if stale:
            print(
                f"gen_bindings --check: {stale} generated file(s) are stale; run python3 {GENERATOR}", file=sys.stderr
            )
            return 1
        print(f"gen_bindings --check: {len(gen)} files up to date ({len(h.functions)} functions)")
        return 0
    for path in leftovers:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    for path, text in gen.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

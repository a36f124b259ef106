"""The RefineX program language: ops, parser, renderer, chunking and the deletion-only executor.

Pure Python: this package imports no datatrove, torch, transformers or vllm.
"""

from refinex_datatrove.program.chunking import Chunk, Unit, chunk_lines, unit_counter
from refinex_datatrove.program.executor import (
    ChunkProgram,
    ExecPolicy,
    ExecResult,
    SkipReason,
    delete_spans,
    execute_document,
    is_deletion_of,
    merge_spans,
    whole_document,
)
from refinex_datatrove.program.ops import FUNCTIONS, KeepAll, Op, RemoveLines, RemoveStr, format_program
from refinex_datatrove.program.parser import (
    MAX_LINE_NUMBER,
    InvalidCall,
    InvalidReason,
    ParseResult,
    call_length_bound,
    parse_call,
    parse_program,
)
from refinex_datatrove.program.render import (
    PROMPT_STYLE,
    REFINE_INSTRUCTION,
    RENDER_FORMAT,
    render_chunk,
    render_prompt,
    split_lines,
)

__all__ = [
    "FUNCTIONS",
    "MAX_LINE_NUMBER",
    "PROMPT_STYLE",
    "REFINE_INSTRUCTION",
    "RENDER_FORMAT",
    "Chunk",
    "ChunkProgram",
    "ExecPolicy",
    "ExecResult",
    "InvalidCall",
    "InvalidReason",
    "KeepAll",
    "Op",
    "ParseResult",
    "RemoveLines",
    "RemoveStr",
    "SkipReason",
    "Unit",
    "chunk_lines",
    "delete_spans",
    "execute_document",
    "format_program",
    "is_deletion_of",
    "merge_spans",
    "call_length_bound",
    "parse_call",
    "parse_program",
    "render_chunk",
    "render_prompt",
    "split_lines",
    "unit_counter",
    "whole_document",
]

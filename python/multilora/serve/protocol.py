"""Request bodies of the OpenAI-compatible routes (pydantic models) and the error type the routes answer with.

Field names and defaults are OpenAI's (``max_tokens`` 16 for completions, ``temperature`` 1.0, ``n`` 1); the extra
fields are ours or vLLM's: ``adapters`` (a weighted adapter mix), ``top_k``, ``repetition_penalty``,
``return_token_ids`` and, for chat, ``add_generation_prompt``. Unknown fields are refused (400) rather than ignored,
so a misspelt option is not silently dropped.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool

__all__ = [
    "APIError",
    "AdapterRef",
    "ChatMessage",
    "CompletionRequest",
    "ChatCompletionRequest",
    "LoadAdapterRequest",
    "UnloadAdapterRequest",
    "error_body",
]


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> Dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: Optional[str] = None, code: Optional[str] = None) -> Dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdapterRef(_Strict):
    name: str = Field(min_length=1)
    weight: float = 1.0


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class _Sampling(_Strict):
    """Options shared by both routes."""

    model: str = Field(min_length=1)
    temperature: Optional[float] = Field(default=None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    seed: Optional[int] = Field(default=None, ge=0, le=2**31 - 1)
    stop: Optional[Union[str, List[str]]] = None
    n: int = 1
    stream: StrictBool = False
    stream_options: Optional[StreamOptions] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[Dict[str, float]] = None
    user: Optional[str] = None
    # beyond OpenAI
    adapters: Optional[List[AdapterRef]] = None
    top_k: Optional[int] = Field(default=None, ge=0)
    repetition_penalty: Optional[float] = Field(default=None, gt=0.0)
    return_token_ids: StrictBool = False


class CompletionRequest(_Sampling):
    prompt: Union[str, List[str], List[int], List[List[int]]]
    max_tokens: Optional[int] = Field(default=16, ge=1)
    logprobs: Optional[int] = None
    echo: StrictBool = False
    best_of: Optional[int] = None
    suffix: Optional[str] = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    # extra keys (e.g. "name") are passed to the chat template as they are
    model_config = ConfigDict(extra="allow")
    role: str = Field(min_length=1)
    content: Optional[Union[str, List[TextPart]]] = None


class ChatCompletionRequest(_Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Any] = None
    response_format: Optional[Dict[str, Any]] = None
    add_generation_prompt: StrictBool = True


class LoadAdapterRequest(_Strict):
    lora_name: str = Field(min_length=1, max_length=256)
    lora_path: str = Field(min_length=1, max_length=4096)


class UnloadAdapterRequest(_Strict):
    lora_name: str = Field(min_length=1, max_length=256)
    lora_int_id: Optional[int] = None

"""/v1/models: the generators jobs may name."""

from __future__ import annotations

from fastapi import APIRouter

from genview.api.deps import PrincipalDep
from genview.api.schemas import ErrorBody, ModelInfo, ModelList
from genview.generator.registry import model_names

router = APIRouter(prefix="/models", tags=["models"], responses={401: {"model": ErrorBody, "description": "missing or invalid bearer token"}})


@router.get("", response_model=ModelList, summary="Registered models")
async def list_models(principal: PrincipalDep) -> ModelList:
    """Model names accepted in a job's `model` field."""
    return ModelList(models=[ModelInfo(name=name) for name in model_names()])

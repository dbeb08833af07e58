"""/v1/models: the generators jobs may name."""

from __future__ import annotations

from fastapi import APIRouter

from genview.api.deps import PrincipalDep
from genview.api.schemas import ErrorBody, ModelInfo, ModelList, enabled_models
from genview.generator.registry import get_declaration

router = APIRouter(prefix="/models", tags=["models"], responses={401: {"model": ErrorBody, "description": "missing or invalid bearer token"}})


@router.get("", response_model=ModelList, summary="Models this service runs")
async def list_models(principal: PrincipalDep) -> ModelList:
    """Model names accepted in a job's `model` field (the operator's enabled models), with their params."""
    models = []
    for name in enabled_models():
        declaration = get_declaration(name)
        models.append(ModelInfo(name=name, summary=declaration.summary, params=[p.to_dict() for p in declaration.params]))
    return ModelList(models=models)

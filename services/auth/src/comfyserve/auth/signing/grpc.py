"""GetJwks over gRPC."""

from __future__ import annotations

import json

from comfyserve.auth.signing.service import SigningKeys
from comfyserve.auth.transport import Context
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb


class SigningRpcs:
    _signing: SigningKeys

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.Jwks:
        return pb.Jwks(jwks_json=json.dumps(await self._signing.jwks()))

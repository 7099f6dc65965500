from flask_jwt_extended import (JWTManager, create_access_token, get_jwt,
                                get_jwt_identity, jwt_required)

app.config["JWT_SECRET_KEY"] = os.environ["JWT_SECRET_KEY"]
jwt = JWTManager(app)


@jwt.token_in_blocklist_loader
def token_is_revoked(jwt_header, jwt_payload):
    return RevokedToken.is_revoked(jwt_payload["jti"])


@app.post("/api/token")
def token():
    user = authenticate(request.json["username"], request.json["password"])
    return {"access_token": create_access_token(identity=str(user.id))}  # a string: see below


@app.get("/api/me")
@jwt_required()
def me():
    return {"id": int(get_jwt_identity()), "token id": get_jwt()["jti"]}

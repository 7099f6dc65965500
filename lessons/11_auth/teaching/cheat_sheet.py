from flask_jwt_extended import JWTManager, create_access_token

jwt = JWTManager(app)
token = create_access_token(identity="user1")

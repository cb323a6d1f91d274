-- Integration secrets are stored sealed: AES-256-GCM under the deployment's key
-- (SMOOCH_SECRETS_KEY), as the text envelope `v1:<key id>:<base64url(nonce, ciphertext)>`
-- (services/users/src/sealing.rs), bound to the row's app and integration ids. New rows
-- leave the plaintext `secrets` column '{}'. Rows written before this migration keep their
-- plaintext there with no sealed value: they are read as they are, and the users role seals
-- them at start-up (setting `sealed_secrets`, emptying `secrets`).
ALTER TABLE integrations ADD COLUMN sealed_secrets TEXT;

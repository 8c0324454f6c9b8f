/* Self-contained crypto for the GitHub plugin (no libc beyond memcpy/memset):
 * SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104), AES-256 (FIPS 197) in GCM
 * (NIST SP 800-38D, 96-bit nonce, 128-bit tag), hex and base64. Verified by
 * plugins/github/test/crypto_test.c against NIST/RFC vectors (native build). */
#ifndef GH_CRYPTO_H
#define GH_CRYPTO_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} sha256_ctx;
void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
void sha256(const void *data, size_t len, uint8_t out[32]);
void hmac_sha256(const uint8_t *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32]);

/* 1 when equal; runs in time independent of where the bytes differ. */
int ct_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* AES-256-GCM. ct gets plen bytes; tag 16 bytes. decrypt returns 1 when the
 * tag verifies (constant-time compare), 0 otherwise (pt then undefined). */
void aes256gcm_encrypt(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t alen,
                       const uint8_t *pt, size_t plen, uint8_t *ct, uint8_t tag[16]);
int aes256gcm_decrypt(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t alen,
                      const uint8_t *ct, size_t clen, const uint8_t tag[16], uint8_t *pt);

/* Lowercase hex of n bytes into out (2n+1 with NUL). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes exactly 2n hex chars into n bytes; 1 on success. */
int hex_decode(const char *in, uint8_t *out, size_t n);
/* Standard base64 with padding; out needs 4*((n+2)/3)+1. */
size_t b64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes standard base64 (padding optional); returns bytes or -1. out needs len*3/4+3. */
long b64_decode(const char *in, size_t len, uint8_t *out);
#endif

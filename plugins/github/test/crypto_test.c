/* Native harness for backend/crypto.c:
 *   crypto_test                 known vectors (NIST SHA-256, RFC 4231 HMAC,
 *                               FIPS-197 AES-256 via GCM test cases 13/14)
 *   crypto_test enc K IV AAD PT  prints hex(ct||tag)       (args hex)
 *   crypto_test dec K IV AAD CT_TAG  prints hex(pt) or FAIL
 * Build: clang -O2 -o crypto_test test/crypto_test.c backend/crypto.c */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../backend/crypto.h"

static int failures;
static void check(const char *name, const uint8_t *got, size_t n, const char *want_hex) {
    char hex[1024];
    hex_encode(got, n, hex);
    if (strcmp(hex, want_hex) != 0) {
        printf("FAIL %s\n  got  %s\n  want %s\n", name, hex, want_hex);
        failures++;
    } else {
        printf("ok   %s\n", name);
    }
}
static size_t unhex(const char *s, uint8_t *out) {
    size_t n = strlen(s) / 2;
    if (!hex_decode(s, out, n)) { fprintf(stderr, "bad hex\n"); exit(2); }
    return n;
}

int main(int argc, char **argv) {
    if (argc == 6) {
        static uint8_t k[32], iv[12], aad[4096], in[65536], out[65536], tag[16];
        static char hex[140000];
        unhex(argv[2], k); unhex(argv[3], iv);
        size_t alen = unhex(argv[4], aad), n = unhex(argv[5], in);
        if (strcmp(argv[1], "enc") == 0) {
            aes256gcm_encrypt(k, iv, aad, alen, in, n, out, tag);
            hex_encode(out, n, hex); printf("%s", hex);
            hex_encode(tag, 16, hex); printf("%s\n", hex);
            return 0;
        }
        if (n < 16) return 2;
        if (!aes256gcm_decrypt(k, iv, aad, alen, in, n - 16, in + n - 16, out)) { printf("FAIL\n"); return 1; }
        hex_encode(out, n - 16, hex); printf("%s\n", hex);
        return 0;
    }
    uint8_t d[32];
    sha256("", 0, d);
    check("sha256 empty", d, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256("abc", 3, d);
    check("sha256 abc", d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(m2, strlen(m2), d);
    check("sha256 448-bit", d, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m3 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256(m3, strlen(m3), d);
    check("sha256 896-bit", d, 32, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    sha256_ctx c;
    sha256_init(&c);
    char a1000[1000];
    memset(a1000, 'a', sizeof a1000);
    for (int i = 0; i < 1000; i++) sha256_update(&c, a1000, 1000);
    sha256_final(&c, d);
    check("sha256 million a", d, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    uint8_t key[131];
    memset(key, 0x0b, 20);
    hmac_sha256(key, 20, "Hi There", 8, d);
    check("hmac rfc4231 #1", d, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, d);
    check("hmac rfc4231 #2", d, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 20);
    uint8_t dd[50];
    memset(dd, 0xdd, 50);
    hmac_sha256(key, 20, dd, 50, d);
    check("hmac rfc4231 #3", d, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    memset(key, 0xaa, 131);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_sha256(key, 131, m6, strlen(m6), d);
    check("hmac rfc4231 #6", d, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *m7 = "This is a test using a larger than block-size key and a larger than block-size data. "
                     "The key needs to be hashed before being used by the HMAC algorithm.";
    hmac_sha256(key, 131, m7, strlen(m7), d);
    check("hmac rfc4231 #7", d, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");

    /* GCM spec (McGrew-Viega) test cases 13 and 14: zero key and IV. */
    uint8_t k0[32] = {0}, iv0[12] = {0}, z[16] = {0}, ct[64], tag[16], pt[64];
    aes256gcm_encrypt(k0, iv0, NULL, 0, NULL, 0, ct, tag);
    check("gcm #13 tag", tag, 16, "530f8afbc74536b9a963b4f1c4cb738b");
    aes256gcm_encrypt(k0, iv0, NULL, 0, z, 16, ct, tag);
    check("gcm #14 ct", ct, 16, "cea7403d4d606b6e074ec5d3baf39d18");
    check("gcm #14 tag", tag, 16, "d0d1c8a799996bf0265b98b5d48ab919");
    /* Test case 16: key feffe9..., IV cafebabefacedbaddecaf888, 60-byte pt, 20-byte aad. */
    uint8_t k16[32], iv16[12], p16[60], a16[20];
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", k16);
    unhex("cafebabefacedbaddecaf888", iv16);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", p16);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", a16);
    aes256gcm_encrypt(k16, iv16, a16, 20, p16, 60, ct, tag);
    check("gcm #16 ct", ct, 60, "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
    check("gcm #16 tag", tag, 16, "76fc6ece0f4e1768cddf8853bb2d551b");
    int okd = aes256gcm_decrypt(k16, iv16, a16, 20, ct, 60, tag, pt);
    if (!okd || memcmp(pt, p16, 60)) { printf("FAIL gcm #16 decrypt\n"); failures++; } else printf("ok   gcm #16 decrypt\n");
    tag[0] ^= 1;
    if (aes256gcm_decrypt(k16, iv16, a16, 20, ct, 60, tag, pt)) { printf("FAIL gcm tamper accepted\n"); failures++; }
    else printf("ok   gcm tampered tag refused\n");

    char b[64]; uint8_t back[64];
    b64_encode((const uint8_t *)"foobar", 6, b);
    if (strcmp(b, "Zm9vYmFy")) { printf("FAIL b64 %s\n", b); failures++; }
    b64_encode((const uint8_t *)"fooba", 5, b);
    long n = b64_decode(b, strlen(b), back);
    if (strcmp(b, "Zm9vYmE=") || n != 5 || memcmp(back, "fooba", 5)) { printf("FAIL b64 roundtrip\n"); failures++; }
    else printf("ok   base64\n");
    uint8_t e1[] = "abc", e2[] = "abd";
    if (!ct_equal(e1, e1, 3) || ct_equal(e1, e2, 3)) { printf("FAIL ct_equal\n"); failures++; } else printf("ok   ct_equal\n");
    printf(failures ? "%d FAILURES\n" : "all passed\n", failures);
    return failures != 0;
}

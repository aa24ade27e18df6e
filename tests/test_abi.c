/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The ABI guards of the public option structs: pd_server_opts,
 * pd_client_opts and pd_codec carry struct_version; 0 and the header's
 * version are accepted, a newer one is refused with PD_ERR_MISUSE naming the
 * struct.  Also: the header's version macros agree with the library.
 */
#include "testutil.h"

#include <string.h>

START_TEST(version_macros) {
    ck_assert_uint_eq(pd_version_number(), PARTD_VERSION_NUMBER);
    ck_assert_str_eq(pd_version_string(), PARTD_VERSION_STRING);
    ck_assert_uint_eq(PARTD_VERSION_NUMBER, PARTD_VERSION_MAJOR * 10000 +
                                                PARTD_VERSION_MINOR * 100 +
                                                PARTD_VERSION_PATCH);
}
END_TEST

/* expect_refused(rc, name): rc is PD_ERR_MISUSE and the message names the
 * struct member. */
static void expect_refused(int rc, const char *name) {
    ck_assert_int_eq(rc, PD_ERR_MISUSE);
    ck_assert_int_eq(pd_errcode(NULL), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), name) != NULL,
                  "message '%s' does not name %s", pd_errmsg(NULL), name);
}

START_TEST(server_opts_version) {
    pd_server *srv = NULL;
    pd_server_opts o = {0};
    o.struct_version = PD_SERVER_OPTS_VERSION + 1;
    expect_refused(pd_server_open(&srv, NULL, &o),
                   "pd_server_opts.struct_version");
    ck_assert_ptr_null(srv);
    o.struct_version = PD_SERVER_OPTS_VERSION;
    ck_assert_int_eq(pd_server_open(&srv, NULL, &o), 0);
    ck_assert_int_eq(pd_server_close(&srv), 0);
}
END_TEST

START_TEST(client_opts_version) {
    pd_store *c = NULL;
    pd_client_opts o = {0};
    o.struct_version = PD_CLIENT_OPTS_VERSION + 1;
    expect_refused(pd_client_open(&c, "tcp://127.0.0.1:1", &o),
                   "pd_client_opts.struct_version");
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(codec_version) {
    for (unsigned v = 0; v <= PD_CODEC_VERSION + 1; v++) {
        pd_store *inner = NULL, *enc = NULL;
        TU_OK(pd_dict_open(&inner), NULL);
        pd_codec c;
        TU_OK(pd_codec_builtin(&c, "zlib", PD_LEVEL_DEFAULT), NULL);
        c.struct_version = v;
        int rc = pd_encode_open(&enc, &inner, &c, 0);
        if (v <= PD_CODEC_VERSION) {
            ck_assert_int_eq(rc, 0);
            ck_assert_int_eq(pd_close(&enc), 0);
        } else {
            expect_refused(rc, "pd_codec.struct_version");
            ck_assert_ptr_null(enc);
            ck_assert_int_eq(pd_close(&inner), 0);
        }
    }
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"version_macros", version_macros},
        {"server_opts_version", server_opts_version},
        {"client_opts_version", client_opts_version},
        {"codec_version", codec_version},
    };
    return TU_RUN_CASES("test_abi", cases, 300, 0);
}

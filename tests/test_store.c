#include "testutil.h"
START_TEST(placeholder) { ck_assert_int_eq(pd_version_number(), PARTD_VERSION_NUMBER); }
END_TEST
int main(void) {
    Suite *s = suite_create("test_store");
    TCase *tc = tcase_create("placeholder");
    tcase_add_test(tc, placeholder);
    suite_add_tcase(s, tc);
    return tu_run(s);
}

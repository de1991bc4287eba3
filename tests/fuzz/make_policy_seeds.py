"""Hand-written policy files for fuzz_policy (make_file_seeds puts them in
its policy seeds): every condition and right, quoting, and the inputs a
hostile or careless file holds, each the kind of text the parser must
refuse or bound."""


def seeds():
    every = (b"# every word the parser knows\n"
             b"allow user=alice user=0 uid=1000-2000 group=scard group=27 exe=/usr/bin/* "
             b"reader=\"Yubico*\" list shared exclusive direct transmit control control=0x42000D48\n"
             b"allow flatpak=org.mozilla.* sandbox=flatpak all\n"
             b"allow snap=chromium sandbox=snap control=3400 control=0xFFFFFFFF\n"
             b"allow container=docker container=pod* sandbox=container list\n"
             b"deny sandbox=none reader=\"SIM [0-9][!a]? \\\"x\\\" \\\\\"\n"
             b"allow all\r\n")
    yield "every-word", every
    yield "quotes", (b"allow reader=\"A \\\"B\\\" C\" exe=\"/opt/my app/\\\\bin\" list\n"
                     b"allow reader=\"unterminated list\n")
    yield "globs", (b"allow exe=*a*a*a*a*a*a*a*a*a*a*a*a*b list\n"
                    b"allow reader=[[[[]]]] reader=\\ reader=[!]-] list\n"
                    b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n")
    yield "errors", (b"allow uid=5-1 all\npermit all\ndeny uid=0 list\nallow\n"
                     b"allow uid=4294967295 control=0x100000000 sandbox=jail user=mallory\n")
    yield "control-chars", b"allow uid=0 all\x1b[2J\nallow \x00 all\n"
    yield "long-line", b"allow reader=" + b"x" * 4100 + b" list\n"
    yield "many-rules", b"".join(b"allow uid=%d reader=R%d list\n" % (i, i) for i in range(200))

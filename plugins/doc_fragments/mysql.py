# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every MySQL module of mutuapix.ops."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host of the MySQL or MariaDB server. Ignored when O(login_unix_socket) is set.
      - Falls back to C(host) in O(config_file), then C(localhost).
    type: str
  login_port:
    description:
      - TCP port of the server. Falls back to C(port) in O(config_file), then C(3306).
    type: int
  login_unix_socket:
    description:
      - Path of the server's Unix socket. Preferred over TCP on the database host.
      - Falls back to C(socket) in O(config_file). Without either, C(localhost) on port 3306 means the first
        server socket found of C(/run/mysqld/mysqld.sock), C(/var/run/mysqld/mysqld.sock) and
        C(/var/lib/mysql/mysql.sock), as the client programs would use (never C(/tmp/mysql.sock), which any
        local user could create); without one of those, and for any other host or port, TCP. The module's
        own connection and the client programs always take the same channel.
    type: path
  login_user:
    description:
      - Account to connect as. Falls back to C(user) in O(config_file).
    type: str
  login_password:
    description:
      - Password of O(login_user). Falls back to C(password) in O(config_file).
      - Never written to a command line or the environment; the client programs read it
        from a temporary 0600 option file that is removed afterwards.
    type: str
  config_file:
    description:
      - A MySQL option file whose C([client]) group supplies any connection detail not given
        as an option. The default is only read when it exists; an explicit path must exist.
      - Its C([client]), C([client-server]), C([mysql]), C([mariadb-client]) and C([client-mariadb]) groups
        are read as the client programs read them - quotes, escapes such as C(\\) and C(\"), C(#) comments
        outside quotes, later lines winning.
      - C(!include FILE) and C(!includedir DIR) (its C(*.cnf) files in name order) are followed where they
        stand, up to 10 levels deep, as the client library follows them; so O(config_file=/etc/mysql/my.cnf)
        reads Debian's C(conf.d) and C(mariadb.conf.d) folders. Paths must be absolute. A missing C(!include)
        file is skipped, a missing C(!includedir) folder is an error; a malformed included file or deeper
        nesting fails the task (the client programs would only warn and read the file in part).
      - "TLS settings of the file: C(ssl-ca), C(ssl-cert) and C(ssl-key) are taken as O(ssl_ca), O(ssl_cert)
        and O(ssl_key) (the options win). C(ssl-mode=REQUIRED) requires TLS without verifying the server;
        C(ssl-mode=VERIFY_CA), C(ssl-mode=VERIFY_IDENTITY) and C(ssl-verify-server-cert) verify its certificate
        and host name, against C(ssl-ca) or, without one, the host's CA bundle; C(ssl-mode=DISABLED), C(skip-ssl)
        and C(ssl=0) turn TLS off (and the file's own C(ssl-*) paths with it), unless O(ssl_ca), O(ssl_cert)
        or O(ssl_key) is set. Over a Unix socket the file's demand for TLS is met by the socket, as the client
        programs take it. Without any of these, TLS is used over TCP when the server offers it, unverified."
    type: path
    default: ~/.my.cnf
  ssl_ca:
    description:
      - CA certificate to verify the server's TLS certificate and host name with.
      - When set, TLS is required - a server that offers none is refused before any credential is sent.
      - The client programs the modules run verify the same way (MySQL's get C(--ssl-mode=VERIFY_IDENTITY)).
    type: path
  ssl_cert:
    description:
      - Client TLS certificate. When set, TLS is required (see O(ssl_ca)).
    type: path
  ssl_key:
    description:
      - Client TLS private key. When set, TLS is required (see O(ssl_ca)).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established.
    type: int
    default: 30
requirements:
  - PyMySQL >= 1.0.2 on the managed host.
notes:
  - "Set the connection options once for a play with C(module_defaults) and the group
    C(group/mutuapix.ops.mysql)."
"""
